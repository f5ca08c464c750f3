#!/usr/bin/env node
// The single `tally` entry point; each verb lives in its own file.

import { serveCommand, SERVE_HELP } from "./serve-command";
import { upCommand, UP_HELP } from "./up-command";
import { statusCommand, STATUS_HELP } from "./status-command";
import { settlementCommand, SETTLEMENT_HELP } from "./settlement-commands";
import { shiftCommand, SHIFT_HELP } from "./shift-command";
import { formatCliError } from "./cli-errors";

const HELP = `tally - multi-region credit balances

usage: tally <command> [options]

commands:
  up        start a local 3-region cluster (NATS supercluster, Postgres, 3 nodes)
  serve     run one regional node
  status    every node's view of every region: lag, convergence, last settlement
  settle    run a settlement now; settlements, overspends, history read the ledger
  shift     move rights in bulk from one region to another before a planned traffic move
  help      this text; "tally <command> --help" for a command's options

${UP_HELP}
${SERVE_HELP}
${STATUS_HELP}
${SETTLEMENT_HELP}
${SHIFT_HELP}`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serveCommand(rest);
    case "up":
      return upCommand(rest);
    case "status":
      return statusCommand(rest);
    case "shift":
      return shiftCommand(rest);
    case "settle":
    case "settlements":
    case "overspends":
    case "history":
      return settlementCommand(command, rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(HELP);
      return;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${HELP}`);
      process.exitCode = 2;
  }
}

/**
 * A reader that goes away (`tally settlements | head -1`) is not a failure:
 * the rest of the output is dropped and the command ends as it would have
 * (`up` and `serve` keep running until stopped, rather than orphan their servers).
 */
function dropOutputOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
  });
}

dropOutputOnClosedPipe(process.stdout);
dropOutputOnClosedPipe(process.stderr);

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${formatCliError(error)}\n`);
  process.exitCode = 1;
});
