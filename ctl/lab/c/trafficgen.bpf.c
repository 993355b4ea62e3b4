/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * trafficgen.bpf.c - the small-packet generator of `vlnet lab bench`, in the
 * manner of xdp-trafficgen.
 *
 * Entry points:
 *   xdp_trafficgen  run by BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES:
 *                   every run sends the test frame out of target_ifindex.
 *   xdp_bench_pass  XDP_PASS, attached to the veth peer the generator sends
 *                   into: a veth delivers XDP redirects only to a peer with
 *                   an XDP program.
 *   xdp_bench_drop  XDP_DROP, counted per CPU in bench_drops[0]: attached to
 *                   the receiving VM's interface for a decap-rate run, so
 *                   what follows the decap point is as cheap as it can be
 *                   and equal for every topology.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Interface to send out of (in the netns the test run happens in); set by
 * the loader before load. */
volatile const __u32 target_ifindex = 0;

/* Frames xdp_bench_drop dropped (one slot, per CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bench_drops SEC(".maps");

SEC("xdp")
int xdp_trafficgen(struct xdp_md *ctx)
{
	return bpf_redirect(target_ifindex, 0);
}

SEC("xdp")
int xdp_bench_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_bench_drop(struct xdp_md *ctx)
{
	__u32 slot = 0;
	__u64 *n = bpf_map_lookup_elem(&bench_drops, &slot);

	if (n)
		*n += 1;
	return XDP_DROP;
}
