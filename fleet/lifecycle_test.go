package fleet

import (
	"testing"

	"github.com/neocloud/neocloud"
)

// TestLifecycleTransitions checks every (from, to) pair against the legal
// moves written out here by hand.
func TestLifecycleTransitions(t *testing.T) {
	legal := map[[2]Lifecycle]bool{
		{LifecycleProvisioning, LifecycleBurnIn}: true, {LifecycleProvisioning, LifecycleAvailable}: true,
		{LifecycleProvisioning, LifecycleRepair}: true, {LifecycleProvisioning, LifecycleRetired}: true,
		{LifecycleBurnIn, LifecycleAvailable}: true, {LifecycleBurnIn, LifecycleSanitizing}: true,
		{LifecycleBurnIn, LifecycleRepair}: true, {LifecycleBurnIn, LifecycleRetired}: true,
		{LifecycleAvailable, LifecycleMaintenance}: true, {LifecycleAvailable, LifecycleRepair}: true,
		{LifecycleAvailable, LifecycleSanitizing}: true, {LifecycleAvailable, LifecycleRetired}: true,
		{LifecycleMaintenance, LifecycleAvailable}: true, {LifecycleMaintenance, LifecycleBurnIn}: true,
		{LifecycleMaintenance, LifecycleRepair}: true, {LifecycleMaintenance, LifecycleSanitizing}: true,
		{LifecycleMaintenance, LifecycleRetired}: true,
		{LifecycleRepair, LifecycleBurnIn}:       true, {LifecycleRepair, LifecycleMaintenance}: true, {LifecycleRepair, LifecycleRetired}: true,
		{LifecycleSanitizing, LifecycleAvailable}: true, {LifecycleSanitizing, LifecycleRepair}: true, {LifecycleSanitizing, LifecycleRetired}: true,
		{LifecycleRetired, LifecycleProvisioning}: true,
	}
	for _, from := range Lifecycles {
		for _, to := range Lifecycles {
			want := legal[[2]Lifecycle{from, to}]
			err := Transition(from, to)
			if want && err != nil {
				t.Errorf("%s → %s: %v, want legal", from, to, err)
			}
			if !want {
				var e *neocloud.Error
				if err == nil {
					t.Errorf("%s → %s: allowed, want refused", from, to)
				} else if ne, ok := err.(*neocloud.Error); !ok || ne.Kind != neocloud.KindConflict || ne.State != string(from) {
					t.Errorf("%s → %s: %v (%T %v), want a conflict naming state %s", from, to, err, err, e, from)
				}
			}
		}
	}
	if err := Transition(LifecycleAvailable, "dancing"); neocloud.ErrorKind(err) != neocloud.KindInvalid {
		t.Errorf("unknown state: %v, want invalid", err)
	}
	// Repair never leads straight back to service: it goes through burn-in.
	if CanTransition(LifecycleRepair, LifecycleAvailable) {
		t.Error("repair → available is allowed; it must pass burn-in and sanitizing")
	}
}
