// Command report summarises the JUnit XML reports e2e.test writes (one per
// part of a conformance run) in one line per part, names the specs that
// failed, and checks how many specs ran.
//
//	report [-expect N] [-list FILE] PART JUNIT SECONDS [PART JUNIT SECONDS ...]
//
// For each part it prints
//
//	parallel: 380 passed, 2 failed, 3 skipped (35m12s)
//
// where "skipped" counts the specs that matched the focus but skipped
// themselves at run time (e2eskipper); specs the focus filtered out are not
// counted. Suite-level nodes (BeforeSuite, ReportAfterSuite, …) count only
// when they fail. With -expect it fails unless exactly N specs passed or
// failed over all parts, and with -list unless their names are exactly the
// lines of FILE (so a renamed spec fails the run instead of running nothing).
// It exits 1 when any spec failed, a report is missing or a check failed.
package main

import (
	"bufio"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

type testSuite struct {
	Cases []testCase `xml:"testcase"`
}

type testCase struct {
	Name    string `xml:"name,attr"`
	Status  string `xml:"status,attr"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

type partResult struct {
	name                    string
	passed, failed, skipped int
	failedNames, ranNames   []string
	missing                 error
	duration                time.Duration
}

// specName strips the "[It] " prefix ginkgo puts before a spec's full text.
func specName(name string) (string, bool) {
	if rest, ok := strings.CutPrefix(name, "[It] "); ok {
		return rest, true
	}
	return name, false
}

func readPart(name, file string, d time.Duration) partResult {
	r := partResult{name: name, duration: d}
	data, err := os.ReadFile(file)
	if err != nil {
		r.missing = err
		return r
	}
	var suites struct {
		Suites []testSuite `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &suites); err != nil {
		r.missing = fmt.Errorf("%s: %w", file, err)
		return r
	}
	for _, s := range suites.Suites {
		for _, c := range s.Cases {
			spec, isSpec := specName(c.Name)
			switch c.Status {
			case "passed":
				if isSpec {
					r.passed++
					r.ranNames = append(r.ranNames, spec)
				}
			case "skipped":
				// "skipped" alone: filtered out by focus/skip; "skipped - why": Skip() at run time.
				if isSpec && c.Skipped != nil && c.Skipped.Message != "skipped" {
					r.skipped++
				}
			case "pending":
			default: // failed, timedout, interrupted, aborted, panicked
				r.failed++
				r.failedNames = append(r.failedNames, fmt.Sprintf("%s (%s)", spec, c.Status))
				if isSpec {
					r.ranNames = append(r.ranNames, spec)
				}
			}
		}
	}
	return r
}

func readLines(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines, sc.Err()
}

func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

func main() {
	expect := flag.Int("expect", -1, "fail unless exactly this many specs ran (passed or failed) over all parts")
	list := flag.String("list", "", "fail unless the specs that ran are exactly the names in this file (one a line)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: report [-expect N] [-list FILE] PART JUNIT SECONDS [PART JUNIT SECONDS ...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 || len(args)%3 != 0 {
		flag.Usage()
		os.Exit(2)
	}
	ok := true
	var parts []partResult
	for i := 0; i < len(args); i += 3 {
		secs, err := strconv.Atoi(args[i+2])
		if err != nil {
			fmt.Fprintf(os.Stderr, "report: bad SECONDS %q\n", args[i+2])
			os.Exit(2)
		}
		parts = append(parts, readPart(args[i], args[i+1], time.Duration(secs)*time.Second))
	}
	var ran []string
	for _, p := range parts {
		if p.missing != nil {
			fmt.Printf("%s: no report (%v) (%s)\n", p.name, p.missing, formatDuration(p.duration))
			ok = false
			continue
		}
		fmt.Printf("%s: %d passed, %d failed, %d skipped (%s)\n", p.name, p.passed, p.failed, p.skipped, formatDuration(p.duration))
		ran = append(ran, p.ranNames...)
		if p.failed > 0 {
			ok = false
		}
	}
	for _, p := range parts {
		for _, n := range p.failedNames {
			fmt.Printf("FAILED %s: %s\n", p.name, n)
		}
	}
	if *expect >= 0 && len(ran) != *expect {
		fmt.Printf("expected %d specs to run, %d ran\n", *expect, len(ran))
		ok = false
	}
	if *list != "" {
		want, err := readLines(*list)
		if err != nil {
			fmt.Fprintf(os.Stderr, "report: %v\n", err)
			os.Exit(2)
		}
		for _, n := range want {
			if !slices.Contains(ran, n) {
				fmt.Printf("did not run: %s\n", n)
				ok = false
			}
		}
		for _, n := range ran {
			if !slices.Contains(want, n) {
				fmt.Printf("ran but not listed: %s\n", n)
				ok = false
			}
		}
	}
	if !ok {
		os.Exit(1)
	}
}
