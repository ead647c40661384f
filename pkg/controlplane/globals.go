package controlplane

import (
	"fmt"

	"k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
)

// setFeatureGates sets the process-wide feature gates once, before any
// component builds its options: every embedded component reads the same
// default feature gate and component-globals registry.
func setFeatureGates(gates map[string]bool) error {
	if len(gates) > 0 {
		if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(gates); err != nil {
			return fmt.Errorf("featureGates: %w", err)
		}
	}
	if err := compatibility.DefaultComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("featureGates: %w", err)
	}
	return nil
}
