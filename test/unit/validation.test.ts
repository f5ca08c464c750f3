// Tests of the shared input rules: every rejection is an InvalidArgumentError
// that names the field, and accepted values come back unchanged (exactly).

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX } from "../../src/core/amounts";
import { InvalidArgumentError } from "../../src/core/errors";
import { validateAccountId, validateAmount, validateRequestId } from "../../src/core/validation";

const ACCOUNT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@/-";

function rejection(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (e) {
    if (e instanceof InvalidArgumentError) return e;
    throw e;
  }
  throw new Error("expected an InvalidArgumentError");
}

describe("validation - account id", () => {
  it("accepts 1 to 128 characters of [A-Za-z0-9._:@/-]", () => {
    expect(validateAccountId("a")).to.equal("a");
    expect(validateAccountId(ACCOUNT_CHARS)).to.equal(ACCOUNT_CHARS);
    expect(validateAccountId("x".repeat(128))).to.equal("x".repeat(128));
    expect(validateAccountId("tenant:42/user@example.com")).to.equal("tenant:42/user@example.com");
  });

  it("rejects an empty id as required", () => {
    const error = rejection(() => validateAccountId(""));
    expect(error.field).to.equal("account_id");
    expect(error.message).to.equal("account_id: is required");
  });

  it("rejects 129 characters and says how many were sent", () => {
    const error = rejection(() => validateAccountId("x".repeat(129)));
    expect(error.message).to.equal("account_id: is 129 characters; at most 128 allowed");
  });

  it("rejects spaces, control characters, a trailing newline and non-ASCII", () => {
    for (const bad of ["a b", " a", "a\n", "a\u0000", "caf\u00e9", "a#b", "a+b", "a\t", "\u{1F600}"]) {
      const error = rejection(() => validateAccountId(bad));
      expect(error.field, JSON.stringify(bad)).to.equal("account_id");
      expect(error.reason).to.equal("must contain only [A-Za-z0-9._:@/-]");
    }
  });

  it("names the field the caller passes", () => {
    expect(rejection(() => validateAccountId("", "debits[3].account_id")).field).to.equal("debits[3].account_id");
  });

  it("accepts every string of allowed characters and rejects any with one other character", () => {
    const allowed = fc.constantFrom(...ACCOUNT_CHARS.split(""));
    fc.assert(
      fc.property(fc.array(allowed, { minLength: 1, maxLength: 128 }), (chars) => {
        const id = chars.join("");
        expect(validateAccountId(id)).to.equal(id);
      }),
    );
    const other = fc.string({ minLength: 1, maxLength: 1, unit: "binary" }).filter((c) => !ACCOUNT_CHARS.includes(c));
    fc.assert(
      fc.property(fc.array(allowed, { maxLength: 100 }), other, fc.nat(), (chars, bad, at) => {
        chars.splice(at % (chars.length + 1), 0, bad);
        expect(() => validateAccountId(chars.join(""))).to.throw(InvalidArgumentError);
      }),
    );
  });
});

describe("validation - request id", () => {
  it("accepts 1 to 128 printable ASCII characters without spaces", () => {
    const printable = Array.from({ length: 0x7e - 0x21 + 1 }, (_, k) => String.fromCharCode(0x21 + k)).join("");
    expect(validateRequestId(printable)).to.equal(printable);
    expect(validateRequestId("r".repeat(128))).to.equal("r".repeat(128));
    expect(validateRequestId("550e8400-e29b-41d4-a716-446655440000")).to.equal("550e8400-e29b-41d4-a716-446655440000");
  });

  it("rejects empty, too long, spaces, control and non-ASCII characters, naming the field", () => {
    expect(rejection(() => validateRequestId("")).message).to.match(/^request_id: is required/);
    expect(rejection(() => validateRequestId("r".repeat(129))).message).to.equal(
      "request_id: is 129 characters; at most 128 allowed",
    );
    for (const bad of ["a b", "a\n", "\u007f", "\u00e9", "a\t"]) {
      expect(rejection(() => validateRequestId(bad)).reason, JSON.stringify(bad)).to.equal(
        "must be printable ASCII without spaces",
      );
    }
    expect(rejection(() => validateRequestId("", "debits[0].request_id")).field).to.equal("debits[0].request_id");
  });
});

describe("validation - amount", () => {
  it("accepts 1 to int64 max exactly", () => {
    expect(validateAmount(1n)).to.equal(1n);
    expect(validateAmount((1n << 53n) + 1n)).to.equal(9007199254740993n);
    expect(validateAmount(INT64_MAX)).to.equal(9223372036854775807n);
  });

  it("rejects zero and negative amounts with the value in the message", () => {
    expect(rejection(() => validateAmount(0n)).message).to.equal(
      "amount: must be a positive integer of minor units; got 0",
    );
    expect(rejection(() => validateAmount(-(1n << 63n))).reason).to.contain("got -9223372036854775808");
  });

  it("rejects int64 max + 1 and beyond", () => {
    expect(rejection(() => validateAmount(INT64_MAX + 1n)).message).to.equal(
      "amount: exceeds int64 max 9223372036854775807",
    );
    expect(rejection(() => validateAmount(1n << 64n, "debits[2].amount")).field).to.equal("debits[2].amount");
  });

  it("accepts exactly the range [1, 2^63 − 1]", () => {
    fc.assert(
      fc.property(fc.bigInt(-(1n << 65n), 1n << 65n), (value) => {
        const inRange = value >= 1n && value <= INT64_MAX;
        if (inRange) expect(validateAmount(value)).to.equal(value);
        else expect(() => validateAmount(value)).to.throw(InvalidArgumentError);
      }),
    );
  });
});
