#!/usr/bin/env node
// The single `tally` entry point; each verb lives in its own file.

// Verbs are loaded on use: a misconfigured `serve` must fail within a second,
// before the gRPC, NATS and Postgres libraries are even loaded.

async function help(): Promise<string> {
  const [serve, up, credentials, status, settlement, shift] = await Promise.all([
    import("./serve-command"),
    import("./up-command"),
    import("./credentials-command"),
    import("./status-command"),
    import("./settlement-commands"),
    import("./shift-command"),
  ]);
  return `tally - multi-region credit balances

usage: tally <command> [options]

commands:
  up        start a local 3-region cluster (NATS supercluster, Postgres, 3 nodes)
  credentials  write the local CA and credentials (NATS, Postgres) without starting anything
  serve     run one regional node
  status    every node's view of every region: lag, convergence, last settlement
  settle    run a settlement now; settlements, overspends, history read the ledger
  shift     move rights in bulk from one region to another before a planned traffic move
  help      this text; "tally <command> --help" for a command's options

${up.UP_HELP}
${credentials.CREDENTIALS_HELP}
${serve.SERVE_HELP}
${status.STATUS_HELP}
${settlement.SETTLEMENT_HELP}
${shift.SHIFT_HELP}`;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return (await import("./serve-command")).serveCommand(rest);
    case "up":
      return (await import("./up-command")).upCommand(rest);
    case "credentials":
      (await import("./credentials-command")).credentialsCommand(rest);
      return;
    case "shift":
      return (await import("./shift-command")).shiftCommand(rest);
    case "status":
      return (await import("./status-command")).statusCommand(rest);
    case "settle":
    case "settlements":
    case "overspends":
    case "history":
      return (await import("./settlement-commands")).settlementCommand(command, rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(await help());
      return;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${await help()}`);
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

main(process.argv.slice(2)).catch(async (error: unknown) => {
  const { formatCliError } = await import("./cli-errors");
  process.stderr.write(`${formatCliError(error)}\n`);
  process.exitCode = 1;
});
