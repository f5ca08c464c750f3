// NATS names for one replica's stream and subjects, in one place.

export function streamName(replica: string): string {
  return `TALLY_${replica.toUpperCase().replace(/-/g, "_")}`;
}

export function deltaSubject(replica: string): string {
  return `tally.delta.${replica}`;
}

export function statusSubject(replica: string): string {
  return `tally.status.${replica}`;
}

export const STATUS_WILDCARD = "tally.status.*";

export function rightsSubject(replica: string): string {
  return `tally.rights.${replica}`;
}

/** Request subject asking a replica to write a fresh snapshot now (settlement). */
export function snapshotSubject(replica: string): string {
  return `tally.snapshot.${replica}`;
}

/** The stream and subject where settlers publish what each settlement recorded. */
export const SETTLED_STREAM = "TALLY_SETTLED";
export const SETTLED_SUBJECT = "tally.settled";
