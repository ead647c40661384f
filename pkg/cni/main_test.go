package cni

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// The test binary doubles as helper processes: the multi-process IPAM test
// and the exec'd plugin (PluginMain) tests re-run it with VCS_CNI_TEST_HELPER.
func TestMain(m *testing.M) {
	switch os.Getenv("VCS_CNI_TEST_HELPER") {
	case "":
		os.Exit(m.Run())
	case "plugin":
		PluginMain()
		os.Exit(0)
	case "alloc":
		_, subnet, _ := net.ParseCIDR(os.Getenv("VCS_SUBNET"))
		a := &allocator{dir: os.Getenv("VCS_DIR"), subnet: subnet, gateway: ipAdd(subnet.IP, 1)}
		ip, _, err := a.Allocate(os.Getenv("VCS_ID"), "eth0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(ip)
		os.Exit(0)
	}
	os.Exit(2)
}
