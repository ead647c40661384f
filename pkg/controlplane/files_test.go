package controlplane

import (
	"strings"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// The audit policy as the API server evaluates it: request bodies only for
// writes to built-in groups, never for Secrets or for groups we don't know.
func TestAuditPolicyLevels(t *testing.T) {
	p, err := policy.LoadPolicyFromBytes([]byte(auditPolicy))
	if err != nil {
		t.Fatal(err)
	}
	eval := policy.NewPolicyRuleEvaluator(p)
	alice := &user.DefaultInfo{Name: "alice", Groups: []string{"dev"}}
	for _, c := range []struct {
		verb, group, resource string
		want                  auditinternal.Level
	}{
		{"create", "apps", "deployments", auditinternal.LevelRequest},
		{"patch", "", "pods", auditinternal.LevelRequest},
		{"update", "rbac.authorization.k8s.io", "clusterrolebindings", auditinternal.LevelRequest},
		{"create", "", "secrets", auditinternal.LevelMetadata},
		{"update", "", "configmaps", auditinternal.LevelMetadata},
		{"create", "", "serviceaccounts/token", auditinternal.LevelMetadata},
		// A custom resource may hold a credential in its spec.
		{"create", "db.example.com", "passwords", auditinternal.LevelMetadata},
		{"patch", "monitoring.coreos.com", "alertmanagerconfigs", auditinternal.LevelMetadata},
		{"get", "apps", "deployments", auditinternal.LevelMetadata},
		{"create", "", "events", auditinternal.LevelNone},
	} {
		res, sub, _ := strings.Cut(c.resource, "/")
		attrs := authorizer.AttributesRecord{User: alice, Verb: c.verb, APIGroup: c.group, Resource: res, Subresource: sub, ResourceRequest: true, Namespace: "default", Name: "x"}
		if got := eval.EvaluatePolicyRule(attrs).Level; got != c.want {
			t.Errorf("%s %s/%s: level %s, want %s", c.verb, c.group, c.resource, got, c.want)
		}
	}
}
