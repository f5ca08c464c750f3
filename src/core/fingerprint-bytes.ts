// The fingerprints of remembered requests ("d|account|amount", "g|account|amount")
// as ASCII bytes in one growable ring buffer, instead of one heap string per
// id. Entries are appended at the tail and released from the head in the
// order they came (the answer rings are FIFO), so the buffer needs no free
// list: an entry is a start position (absolute byte count since the ring was
// made) and a length. Equality is exact, byte for byte: two different
// fingerprints never compare equal, so a retry with other parameters is
// always a conflict and never a replay (no hash, no collision).

/** Largest fingerprint kept as bytes (the wire allows 512); longer ones go to the caller's side map. */
export const MAX_FINGERPRINT_BYTES = 0xffff;
const INITIAL_BYTES = 16 * 1024;
/** The buffer never grows beyond this; a fingerprint that does not fit goes to the side map. */
const MAX_BYTES = 2 ** 31;
const decoder = new TextDecoder();

export class FingerprintBytes {
  /** Absolute position of the oldest byte held and of the byte after the newest. */
  private head = 0;
  private tail = 0;

  constructor(private bytes: Uint8Array = new Uint8Array(0)) {}

  /** Bytes held by live entries. */
  get used(): number {
    return this.tail - this.head;
  }

  /**
   * Appends `text` and returns its start position, or -1 when it cannot be
   * kept as bytes (a character beyond ASCII, too long, or no room): the
   * caller then keeps the string itself.
   */
  append(text: string): number {
    const length = text.length;
    if (length > MAX_FINGERPRINT_BYTES) return -1;
    for (let k = 0; k < length; k++) if (text.charCodeAt(k) > 0x7f) return -1;
    if (this.used + length > this.bytes.length && !this.grow(this.used + length)) return -1;
    const start = this.tail;
    const capacity = this.bytes.length;
    for (let k = 0; k < length; k++) this.bytes[(start + k) % capacity] = text.charCodeAt(k);
    this.tail += length;
    return start;
  }

  /** Frees the oldest `length` bytes: the oldest entry, released in the order entries were appended. */
  release(length: number): void {
    this.head += length;
    if (this.head > this.tail) throw new RangeError("fingerprint bytes released beyond the newest entry");
  }

  equals(start: number, length: number, text: string): boolean {
    if (text.length !== length) return false;
    const capacity = this.bytes.length;
    const at = start % capacity;
    if (at + length <= capacity) {
      for (let k = 0; k < length; k++) if (this.bytes[at + k] !== text.charCodeAt(k)) return false;
      return true;
    }
    for (let k = 0; k < length; k++) if (this.bytes[(start + k) % capacity] !== text.charCodeAt(k)) return false;
    return true;
  }

  /** The fingerprint at `start` as a string (built only for snapshots and entries()). */
  read(start: number, length: number): string {
    if (length === 0) return "";
    const capacity = this.bytes.length;
    const at = start % capacity;
    if (at + length <= capacity) return decoder.decode(this.bytes.subarray(at, at + length));
    const joined = new Uint8Array(length);
    joined.set(this.bytes.subarray(at));
    joined.set(this.bytes.subarray(0, length - (capacity - at)), capacity - at);
    return decoder.decode(joined);
  }

  /** A copy taken at one instant (one memcpy), read-only by convention. */
  copy(): FingerprintBytes {
    const out = new FingerprintBytes(this.bytes.slice());
    out.head = this.head;
    out.tail = this.tail;
    return out;
  }

  /** Grows by half (not doubling: the slack stays a third at most), keeping every byte at position % capacity. */
  private grow(needed: number): boolean {
    if (needed > MAX_BYTES) return false;
    const capacity = Math.min(MAX_BYTES, Math.max(INITIAL_BYTES, needed, Math.ceil(this.bytes.length * 1.5)));
    const old = this.bytes;
    const next = new Uint8Array(capacity);
    for (let position = this.head; position < this.tail; ) {
      const from = position % old.length;
      const to = position % capacity;
      const run = Math.min(this.tail - position, old.length - from, capacity - to);
      next.set(old.subarray(from, from + run), to);
      position += run;
    }
    this.bytes = next;
    return true;
  }
}
