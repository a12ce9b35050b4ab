package fleet

// SKU is a sellable shape of node. NodeMaxPowerW is the whole node's
// maximum input power in watts (GPUs, CPUs, NICs, fans), not the GPUs'
// alone. Partitions are the GPU counts that may be sold inside one node
// (NVSwitch partitions, delivered only as VMs); GPUsPerNode is always
// sellable as a whole node. NVLinkDomainNodes > 0 means that many nodes form
// one NVLink domain (a GB200 NVL72 rack: 18 nodes × 4 GPUs). TurnaroundS is
// the time a node needs between two tenants (sanitize, and burn-in when
// required), in seconds.
type SKU struct {
	Name              string `json:"name" yaml:"name"`
	GPUModel          string `json:"gpu_model" yaml:"gpu_model"`
	GPUsPerNode       int    `json:"gpus_per_node" yaml:"gpus_per_node"`
	GPUMemoryMiB      int    `json:"gpu_memory_mib" yaml:"gpu_memory_mib"`
	NodeMaxPowerW     int    `json:"node_max_power_w" yaml:"node_max_power_w"`
	GPUMaxPowerW      int    `json:"gpu_max_power_w,omitempty" yaml:"gpu_max_power_w" doc:"One GPU's board power limit (TDP)."`
	Partitions        []int  `json:"partitions,omitempty" yaml:"partitions"`
	PartitionDelivery string `json:"partition_delivery,omitempty" yaml:"partition_delivery" doc:"How partitions are delivered: vm (Fabric Manager partitions), never bare metal."`
	NVLinkDomainNodes int    `json:"nvlink_domain_nodes,omitempty" yaml:"nvlink_domain_nodes"`
	TurnaroundS       int64  `json:"turnaround_s" yaml:"turnaround_s"`
	// GPUPowerShare is the documented share of the node's input power its
	// GPUs draw (HGX H100: about 0.55); billing estimates node energy from
	// GPU energy with it where no out-of-band meter reads the node.
	GPUPowerShare float64 `json:"gpu_power_share,omitempty" yaml:"gpu_power_share"`
	// PowerCapW makes a power-capped SKU (e.g. H100 at 500 W): its nodes'
	// agents hold every GPU to it, it is planned at the capped node power
	// and priced on its own.
	PowerCapW   int    `json:"power_cap_w,omitempty" yaml:"power_cap_w" doc:"Per-GPU power cap the nodes are held to (a power-capped SKU)."`
	Description string `json:"description,omitempty" yaml:"description"`
}

// PlanningNodeW is the power a node of the SKU is planned at: its
// nameplate, less what capping each GPU from its limit to the SKU's cap
// takes off.
func (k SKU) PlanningNodeW() int {
	if k.PowerCapW <= 0 || float64(k.PowerCapW) >= k.MaxGPUPowerW() {
		return k.NodeMaxPowerW
	}
	return k.NodeMaxPowerW - int(float64(k.GPUsPerNode)*(k.MaxGPUPowerW()-float64(k.PowerCapW)))
}

// MaxGPUPowerW is one GPU's power limit: the SKU's, or an estimate from the
// node's (GPUs draw about 55% of an HGX node's power).
func (k SKU) MaxGPUPowerW() float64 {
	if k.GPUMaxPowerW > 0 {
		return float64(k.GPUMaxPowerW)
	}
	return float64(k.NodeMaxPowerW) / float64(max(1, k.GPUsPerNode)) * 0.55
}

// Catalog is the built-in SKUs. A spec may declare others.
var Catalog = []SKU{
	{
		Name: "h100-sxm5-80gb", GPUModel: "NVIDIA H100 80GB HBM3", GPUsPerNode: 8, GPUMemoryMiB: 81559,
		NodeMaxPowerW: 10200, GPUMaxPowerW: 700, Partitions: []int{1, 2, 4}, PartitionDelivery: "vm", TurnaroundS: 2 * 3600,
		Description: "HGX H100 8-GPU server (DGX H100 class): 8× H100 SXM5 80GB, NVSwitch; partitions of 1, 2 or 4 GPUs as VMs only",
	},
	{
		Name: "h200-sxm-141gb", GPUModel: "NVIDIA H200 141GB HBM3e", GPUsPerNode: 8, GPUMemoryMiB: 143771,
		NodeMaxPowerW: 10200, GPUMaxPowerW: 700, Partitions: []int{1, 2, 4}, PartitionDelivery: "vm", TurnaroundS: 2 * 3600,
		Description: "HGX H200 8-GPU server: 8× H200 SXM 141GB, NVSwitch; partitions of 1, 2 or 4 GPUs as VMs only",
	},
	{
		Name: "gb200-nvl72", GPUModel: "NVIDIA GB200", GPUsPerNode: 4, GPUMemoryMiB: 189471,
		NodeMaxPowerW: 5900, GPUMaxPowerW: 1200, NVLinkDomainNodes: 18, TurnaroundS: 4 * 3600,
		Description: "GB200 NVL72 compute tray: 2 Grace CPUs + 4 Blackwell GPUs; 18 trays form one 72-GPU NVLink domain (rack)",
	},
}

// CatalogSKU returns the built-in SKU with that name.
func CatalogSKU(name string) (SKU, bool) {
	for _, s := range Catalog {
		if s.Name == name {
			return s, true
		}
	}
	return SKU{}, false
}

// Sellable reports whether n GPUs is a shape this SKU sells inside one node.
func (s SKU) Sellable(n int) bool {
	if n == s.GPUsPerNode {
		return true
	}
	for _, p := range s.Partitions {
		if p == n {
			return true
		}
	}
	return false
}
