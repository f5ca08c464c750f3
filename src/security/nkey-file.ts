// Reading a node's nkey seed file, apart from the nats client library so that
// validating the node's options does not load it (config errors exit fast).

import { readFileSync } from "node:fs";

/** The seed in an nkey file: the first non-empty line, checked to be a user seed. */
export function readNkeySeed(file: string): Uint8Array {
  const text = readFileSync(file, "utf8")
    .split(/\r?\n/)
    .map((line) => line.trim())
    .find((line) => line !== "" && !line.startsWith("#"));
  if (text === undefined || !text.startsWith("SU")) throw new Error(`${file} holds no nkey user seed (a line starting with SU)`);
  return new TextEncoder().encode(text);
}
