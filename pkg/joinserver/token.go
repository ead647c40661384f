// Package joinserver is the control plane's side of joining a node: the
// bootstrap tokens and join lines, the cluster-info and RBAC objects nodes
// rely on, the join endpoint and the approvers of node certificates.
package joinserver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

// DefaultTokenTTL is how long a token lives unless --ttl says otherwise.
const DefaultTokenTTL = 24 * time.Hour

// TokenUsages are the usages of a join token: JWS-signing cluster-info for
// discovery and authenticating the kubelet's TLS bootstrap.
var TokenUsages = []string{"signing", "authentication"}

// TokenSpec is what `token create` asks for.
type TokenSpec struct {
	TTL         time.Duration // 0: never expires
	Description string
}

// Token is a token as `token list` shows it: never its secret.
type Token struct {
	ID          string
	Expires     *time.Time // nil: never
	Usages      []string
	Groups      []string
	Description string
}

// ParseTTL reads a --ttl value such as 24h, 30m or 0 (never expires).
func ParseTTL(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if s == "0" {
		d, err = 0, nil
	}
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--ttl: invalid value %q: must be a duration such as 24h or 30m, or 0 for a token that never expires", s)
	}
	if d > 0 && d < time.Second {
		return 0, fmt.Errorf("--ttl: invalid value %q: must be at least 1s, or 0 for a token that never expires", s)
	}
	return d, nil
}

// ValidateTokenID checks the ID part of a token (6 characters [a-z0-9]).
func ValidateTokenID(id string) error {
	if !bootstraputil.IsValidBootstrapTokenID(id) {
		return fmt.Errorf("invalid token ID %q: must be 6 characters of [a-z0-9], e.g. abcdef (see `vcluster-standalone token list`)", id)
	}
	return nil
}

// NewTokenSecret returns a fresh token ("id.secret") and its Secret in the
// format kubeadm and the apiserver's bootstrap authenticator use.
func NewTokenSecret(spec TokenSpec) (string, *corev1.Secret, error) {
	if err := validateDescription(spec.Description); err != nil {
		return "", nil, err
	}
	raw, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return "", nil, fmt.Errorf("failed to generate a token: %w", err)
	}
	token, err := bootstraptokenv1.NewBootstrapTokenString(raw)
	if err != nil {
		return "", nil, err
	}
	bt := &bootstraptokenv1.BootstrapToken{
		Token:       token,
		Description: spec.Description,
		TTL:         &metav1.Duration{Duration: spec.TTL},
		Usages:      TokenUsages,
		Groups:      []string{join.NodeBootstrapGroup},
	}
	secret := bootstraptokenv1.BootstrapTokenToSecret(bt)
	secret.Labels = map[string]string{"app.kubernetes.io/managed-by": "vcluster-standalone"}
	return raw, secret, nil
}

func validateDescription(d string) error {
	if strings.ContainsAny(d, "\n\r") || len(d) > 256 {
		return fmt.Errorf("--description: must be one line of at most 256 characters")
	}
	return nil
}

// CreateToken stores a new token in the cluster and returns it ("id.secret").
func CreateToken(ctx context.Context, client kubernetes.Interface, spec TokenSpec) (string, error) {
	for attempt := 0; ; attempt++ {
		raw, secret, err := NewTokenSecret(spec)
		if err != nil {
			return "", err
		}
		_, err = client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, secret, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) && attempt < 3 {
			continue // an ID collision: draw again
		}
		if err != nil {
			return "", fmt.Errorf("failed to create the token Secret: %w", err)
		}
		return raw, nil
	}
}

// ListTokens returns the bootstrap tokens of the cluster, sorted by ID.
// Expired tokens are shown until tokencleaner removes them.
func ListTokens(ctx context.Context, client kubernetes.Interface) ([]Token, error) {
	secrets, err := client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("type", string(bootstrapapi.SecretTypeBootstrapToken)).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to list tokens: %w", err)
	}
	var out []Token
	for i := range secrets.Items {
		bt, err := bootstraptokenv1.BootstrapTokenFromSecret(&secrets.Items[i])
		if err != nil {
			continue // not a well-formed token; the authenticator ignores it too
		}
		t := Token{ID: bt.Token.ID, Usages: bt.Usages, Groups: bt.Groups, Description: bt.Description}
		if bt.Expires != nil {
			expires := bt.Expires.Time
			t.Expires = &expires
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Token) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// DeleteToken removes the token with the given ID, or the ID of a full
// token ("id.secret").
func DeleteToken(ctx context.Context, client kubernetes.Interface, id string) error {
	if bootstraputil.IsValidBootstrapToken(id) {
		id, _, _ = strings.Cut(id, ".")
	}
	if err := ValidateTokenID(id); err != nil {
		return err
	}
	err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("token %s not found (see `vcluster-standalone token list`)", id)
	}
	if err != nil {
		return fmt.Errorf("failed to delete token %s: %w", id, err)
	}
	return nil
}

// TimeLeft renders a token's remaining lifetime for `token list`.
func (t Token) TimeLeft(now time.Time) string {
	if t.Expires == nil {
		return "<forever>"
	}
	left := t.Expires.Sub(now)
	if left <= 0 {
		return "<expired>"
	}
	return left.Round(time.Second).String()
}
