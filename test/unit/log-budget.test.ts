import { expect } from "chai";
import { LogBudget } from "../../src/node/log-budget";

describe("log budget - lines per window for noisy events", () => {
  it("log budget - writes up to the limit per window, then counts what it leaves out and says so in the next line", () => {
    const budget = new LogBudget(3, 1_000);
    const at = (ms: number): string => {
      const d = budget.take(ms);
      return d.write ? `line(${d.skipped})` : "skip";
    };
    expect([at(0), at(10), at(20), at(30), at(40)]).to.deep.equal(["line(0)", "line(0)", "line(0)", "skip", "skip"]);
    // A new window: the first line carries the two left out.
    expect([at(1_000), at(1_001), at(1_002), at(1_003)]).to.deep.equal(["line(2)", "line(0)", "line(0)", "skip"]);
    expect(at(5_000)).to.equal("line(1)");
  });
});
