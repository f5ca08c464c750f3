// One definition of "converged" for a set of nodes' ClusterStatus answers:
// every node holds every region's row at the same sequence and digest, with
// nothing pending. Used by `tally status` and the e2e tests.

import type { ClusterStatusResponse } from "../generated/tally/v1/admin";

export function convergedEverywhere(statuses: readonly ClusterStatusResponse[]): boolean {
  const first = statuses[0];
  if (first === undefined) return false;
  // A node that cannot make writes durable is not converged, whatever its rows say.
  // A standby refuses writes by design (another node of its region writes).
  if (statuses.some((s) => s.writesRefused !== "" && s.writerRole !== "standby")) return false;
  return first.peers.every((peer) =>
    statuses.every((s) => {
      const view = s.peers.find((p) => p.region === peer.region);
      return view !== undefined && view.appliedSequence === peer.appliedSequence && view.digest === peer.digest && view.pending === 0n;
    }),
  );
}
