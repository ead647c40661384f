package joinserver

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

func TestParseTTL(t *testing.T) {
	for in, want := range map[string]time.Duration{"24h": 24 * time.Hour, "0": 0, "1s": time.Second, "90m": 90 * time.Minute} {
		if got, err := ParseTTL(in); err != nil || got != want {
			t.Errorf("ParseTTL(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "abc", "-1h", "5", "10ms"} {
		_, err := ParseTTL(in)
		if err == nil || !strings.HasPrefix(err.Error(), "--ttl: invalid value") || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseTTL(%q): error %v, want a one-line --ttl error", in, err)
		}
	}
}

func TestValidateTokenID(t *testing.T) {
	if err := ValidateTokenID("abc123"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "ABCDEF", "abc12", "abc1234", "abc-12", "../../"} {
		if err := ValidateTokenID(id); err == nil || !strings.Contains(err.Error(), "invalid token ID") {
			t.Errorf("ValidateTokenID(%q) = %v", id, err)
		}
	}
}

func TestNewTokenSecretIsKubeadmFormat(t *testing.T) {
	before := time.Now()
	token, s, err := NewTokenSecret(TokenSpec{TTL: time.Hour, Description: "rack 4"})
	if err != nil {
		t.Fatal(err)
	}
	if !bootstraputil.IsValidBootstrapToken(token) {
		t.Fatalf("token %q is not ID.SECRET", token)
	}
	id, secret, _ := strings.Cut(token, ".")
	if s.Name != "bootstrap-token-"+id || s.Namespace != "kube-system" || s.Type != bootstrapapi.SecretTypeBootstrapToken {
		t.Fatalf("secret %s/%s type %s", s.Namespace, s.Name, s.Type)
	}
	data := func(k string) string { return string(s.Data[k]) }
	if data("token-id") != id || data("token-secret") != secret || data("description") != "rack 4" ||
		data("usage-bootstrap-signing") != "true" || data("usage-bootstrap-authentication") != "true" ||
		data("auth-extra-groups") != join.NodeBootstrapGroup {
		t.Fatalf("secret data %v", s.Data)
	}
	exp, err := time.Parse(time.RFC3339, data("expiration"))
	if err != nil || exp.Before(before.Add(time.Hour-time.Second)) || exp.After(time.Now().Add(time.Hour)) {
		t.Fatalf("expiration %q %v, want now+1h", data("expiration"), err)
	}
	_, forever, _ := NewTokenSecret(TokenSpec{})
	if _, ok := forever.Data["expiration"]; ok {
		t.Fatal("a ttl of 0 must not set an expiration")
	}
	if _, _, err := NewTokenSecret(TokenSpec{Description: "two\nlines"}); err == nil {
		t.Fatal("multi-line description accepted")
	}
}

func TestTokenRoundTrip(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "kube-system"}})
	token, err := CreateToken(ctx, client, TokenSpec{TTL: time.Hour, Description: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateToken(ctx, client, TokenSpec{}); err != nil {
		t.Fatal(err)
	}
	tokens, err := ListTokens(ctx, client)
	if err != nil || len(tokens) != 2 {
		t.Fatalf("list: %v %v", tokens, err)
	}
	id, _, _ := strings.Cut(token, ".")
	var found *Token
	for i := range tokens {
		if tokens[i].ID == id {
			found = &tokens[i]
		}
	}
	if found == nil || found.Description != "ci" || found.Expires == nil {
		t.Fatalf("listed %+v", found)
	}
	if left, err := time.ParseDuration(found.TimeLeft(time.Now())); err != nil || left < 58*time.Minute || left > time.Hour {
		t.Fatalf("time left %s %v", found.TimeLeft(time.Now()), err)
	}
	if left := found.TimeLeft(found.Expires.Add(time.Second)); left != "<expired>" {
		t.Fatalf("time left after expiry: %s", left)
	}
	if err := DeleteToken(ctx, client, token); err != nil { // the full token works too
		t.Fatal(err)
	}
	if err := DeleteToken(ctx, client, id); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("second delete: %v", err)
	}
	if err := DeleteToken(ctx, client, "NOPE!"); err == nil || !strings.Contains(err.Error(), "invalid token ID") {
		t.Fatalf("malformed ID: %v", err)
	}
	if tokens, _ := ListTokens(ctx, client); len(tokens) != 1 {
		t.Fatalf("after delete: %v", tokens)
	}
}

func TestJoinLineForms(t *testing.T) {
	j := JoinLine{Host: "10.123.0.10", APIPort: 6443, JoinPort: 6444, Token: "abcdef.0123456789abcdef", CAHashes: []string{"sha256:00ff"}, EndpointPin: "sha256//AAA="}
	if got, want := j.NodeAgentCommand(), "NODE_AGENT_TOKEN=abcdef.0123456789abcdef node-agent join --server https://10.123.0.10:6443 --ca-cert-hash sha256:00ff"; got != want {
		t.Errorf("node-agent form\n got %s\nwant %s", got, want)
	}
	joinArgs := "--join https://10.123.0.10:6443 --token abcdef.0123456789abcdef --ca-cert-hash sha256:00ff"
	if got := j.JoinArgs(); got != joinArgs {
		t.Errorf("join args\n got %s\nwant %s", got, joinArgs)
	}
	args := "--url https://10.123.0.10:6444/bin --pinned-pubkey 'sha256//AAA=' --join https://10.123.0.10:6443 --ca-cert-hash sha256:00ff"
	if got := j.InstallArgs(); got != args {
		t.Errorf("install args\n got %s\nwant %s", got, args)
	}
	if got, want := j.CurlCommand(), "curl -fsSk --pinnedpubkey 'sha256//AAA=' https://10.123.0.10:6444/install.sh | VCS_TOKEN=abcdef.0123456789abcdef sh -s - "+args; got != want {
		t.Errorf("curl form\n got %s\nwant %s", got, want)
	}
	// What a local user sees in ps: every command of both lines but the
	// variable assignments, which the shell keeps out of argv.
	for _, line := range []string{j.NodeAgentCommand(), j.CurlCommand()} {
		for _, command := range strings.Split(line, "|") {
			var argv []string
			for _, word := range strings.Fields(command) {
				if len(argv) == 0 && strings.Contains(word, "=") && !strings.HasPrefix(word, "-") {
					continue // NAME=value before the command: its environment
				}
				argv = append(argv, word)
			}
			if strings.Contains(strings.Join(argv, " "), "0123456789abcdef") {
				t.Errorf("the token secret is in the argv of %q", command)
			}
		}
	}
	if got := j.Instructions(); !strings.Contains(got, "\n  "+j.NodeAgentCommand()+"\n") || !strings.Contains(got, "\n  "+j.CurlCommand()+"\n") {
		t.Errorf("instructions lack a line:\n%s", got)
	}
	// The join endpoint off: no curl line, and why.
	off := j
	off.EndpointPin = ""
	if got := off.Instructions(); strings.Contains(got, "curl") || !strings.Contains(got, "join endpoint is off") || !strings.Contains(got, "\n  "+j.NodeAgentCommand()+"\n") {
		t.Errorf("instructions with the endpoint off:\n%s", got)
	}
	// During a CA rotation: both pins, each its own flag, in every form.
	rotating := j
	rotating.CAHashes = []string{"sha256:00ff", "sha256:11ee"}
	for _, line := range []string{rotating.NodeAgentCommand(), rotating.JoinArgs(), rotating.InstallArgs(), rotating.CurlCommand()} {
		if !strings.Contains(line, "--ca-cert-hash sha256:00ff --ca-cert-hash sha256:11ee") {
			t.Errorf("rotation line lacks both pins: %s", line)
		}
	}
	v6 := JoinLine{Host: "fd00::1", APIPort: 6443, JoinPort: 6444}
	if v6.APIServer() != "https://[fd00::1]:6443" {
		t.Errorf("IPv6 server %s", v6.APIServer())
	}
}
