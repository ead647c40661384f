// Package kubeapply creates API objects or brings existing ones in line with
// what the caller wants, writing only when something differs: restarts write
// nothing when everything is in place.
package kubeapply

import (
	"context"
	"fmt"
	"reflect"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Client is the part of every client-go typed resource client Ensure uses.
type Client[T metav1.Object] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// Ensure creates want, or lets sync bring the existing object in line with
// it and updates it only when sync reports a change. It reads before
// creating: a create of an existing Service would fail on its cluster IP,
// not as AlreadyExists. Errors read "failed to <verb> <kind> <ns/name>: …".
func Ensure[T metav1.Object](ctx context.Context, api Client[T], kind string, want T, sync func(got, want T) bool) error {
	name := objectName(want)
	got, err := api.Get(ctx, want.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s %s appeared while being created; retrying", kind, name)
		}
		if err != nil {
			return fmt.Errorf("failed to create %s %s: %w", kind, name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to read %s %s: %w", kind, name, err)
	}
	if !sync(got, want) {
		return nil
	}
	if _, err := api.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("failed to update %s %s: %w", kind, name, err)
	}
	return nil
}

// SyncField returns a sync function for objects whose managed content is one
// field (ConfigMap data, RBAC rules or subjects): it is always restored.
func SyncField[T metav1.Object, F any](field func(T) *F) func(got, want T) bool {
	return func(got, want T) bool {
		if reflect.DeepEqual(*field(got), *field(want)) {
			return false
		}
		*field(got) = *field(want)
		return true
	}
}

// BindingClient is a typed client of ClusterRoleBindings or RoleBindings.
type BindingClient[T metav1.Object] interface {
	Client[T]
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// Binding is a ClusterRoleBinding or a RoleBinding.
type Binding interface {
	*rbacv1.ClusterRoleBinding | *rbacv1.RoleBinding
	metav1.Object
}

// EnsureBinding creates want or restores its subjects. A binding's roleRef
// is immutable, so an existing one that refers to another role is deleted
// and created anew.
func EnsureBinding[T Binding](ctx context.Context, api BindingClient[T], want T) error {
	kind, wantRef, _ := bindingParts(want)
	syncSubjects := SyncField(func(b T) *[]rbacv1.Subject { _, _, s := bindingParts(b); return s })
	var stale *types.UID // the UID of an existing binding to another role
	err := Ensure(ctx, api, kind, want, func(got, want T) bool {
		if _, ref, _ := bindingParts(got); *ref != *wantRef {
			uid := got.GetUID()
			stale = &uid
			return false
		}
		return syncSubjects(got, want)
	})
	if err != nil || stale == nil {
		return err
	}
	err = api.Delete(ctx, want.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: stale}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to replace %s %s: %w", kind, objectName(want), err)
	}
	return EnsureBinding(ctx, api, want)
}

func bindingParts(b any) (kind string, ref *rbacv1.RoleRef, subjects *[]rbacv1.Subject) {
	switch b := b.(type) {
	case *rbacv1.ClusterRoleBinding:
		return "ClusterRoleBinding", &b.RoleRef, &b.Subjects
	case *rbacv1.RoleBinding:
		return "RoleBinding", &b.RoleRef, &b.Subjects
	}
	panic(fmt.Sprintf("kubeapply: %T is not a role binding", b)) // excluded by Binding
}

// objectName is ns/name for namespaced objects, else name.
func objectName(obj metav1.Object) string {
	if ns := obj.GetNamespace(); ns != "" {
		return ns + "/" + obj.GetName()
	}
	return obj.GetName()
}
