// Structured logs as JSON lines on stderr: level, time, region, message and
// fields. Quiet by default on the hot path (debug is off unless TALLY_LOG=debug).

export type Level = "debug" | "info" | "warn" | "error";

const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Readonly<Record<string, string | number | boolean | undefined>>;

export interface Logger {
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
}

export function jsonLogger(region: string, level: Level = "info", write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const threshold = ORDER[level];
  const emit = (at: Level, message: string, fields?: Fields): void => {
    if (ORDER[at] < threshold) return;
    write(`${JSON.stringify({ level: at, time: new Date().toISOString(), region, msg: message, ...fields })}\n`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}

export function levelFromEnv(value: string | undefined, fallback: Level = "info"): Level {
  return value === "debug" || value === "info" || value === "warn" || value === "error" ? value : fallback;
}
