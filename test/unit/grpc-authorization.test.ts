// The pure parts of gRPC authorization: the role file's validation (errors name
// the file and the entry), principals from certificates (SAN URI first, CN
// otherwise), and account-prefix scoping as a law over generated accounts.

import { expect } from "chai";
import fc from "fast-check";
import type { PeerCertificate } from "node:tls";
import { AdminService } from "../../src/generated/tally/v1/admin";
import { BalancesService } from "../../src/generated/tally/v1/balances";
import { METHOD_ACCESS, ROLES, rolesAllow, scopeViolation } from "../../src/security/method-access";
import { principalOf } from "../../src/security/principal";
import { parseRoleMap, RoleFileError } from "../../src/security/role-map";

function roleFileError(document: unknown): string {
  try {
    parseRoleMap(document, "role file /etc/tally/roles.json");
  } catch (error) {
    if (error instanceof RoleFileError) return error.message;
    throw error;
  }
  throw new Error("expected a RoleFileError");
}

function certificate(fields: { san?: string; cn?: string }): PeerCertificate {
  return { subject: fields.cn === undefined ? {} : { CN: fields.cn }, subjectaltname: fields.san } as unknown as PeerCertificate;
}

describe("grpc authorization - role file", () => {
  it("role file - a valid file maps principals to roles and optional prefixes", () => {
    const map = parseRoleMap(
      { principals: { "spiffe://x/ops": { roles: ["operator", "auditor"] }, tenant: { roles: ["spender"], accountPrefixes: ["acme/"] } } },
      "roles",
    );
    expect([...(map.get("spiffe://x/ops")?.roles ?? [])]).to.deep.equal(["operator", "auditor"]);
    expect(map.get("spiffe://x/ops")?.accountPrefixes).to.equal(undefined);
    expect(map.get("tenant")?.accountPrefixes).to.deep.equal(["acme/"]);
  });

  it("role file - each malformed entry is refused with the file, the principal and the field named", () => {
    const cases: Array<[unknown, RegExp]> = [
      [[], /roles\.json: must be a JSON object/],
      [{ principals: {}, extra: 1 }, /unknown key "extra"/],
      [{ principals: [] }, /"principals" must be an object/],
      [{ principals: { p: "spender" } }, /principal "p" must be an object/],
      [{ principals: { p: { roles: [] } } }, /principal "p": "roles" must be a non-empty list/],
      [{ principals: { p: { roles: ["spender", "admin"] } } }, /principal "p": roles\[1\] "admin" is not a role \(spender, granter, reader, operator, auditor\)/],
      [{ principals: { p: { roles: ["reader", "reader"] } } }, /principal "p": roles\[1\] "reader" is listed twice/],
      [{ principals: { p: { roles: ["reader"], accountPrefixes: [] } } }, /principal "p": "accountPrefixes" must be a non-empty list/],
      [{ principals: { p: { roles: ["reader"], accountPrefixes: ["ok/", "has space"] } } }, /principal "p": accountPrefixes\[1\] "has space"/],
      [{ principals: { p: { roles: ["reader"], prefixes: ["a"] } } }, /principal "p": unknown key "prefixes"/],
    ];
    for (const [document, expected] of cases) expect(roleFileError(document)).to.match(expected);
  });
});

describe("grpc authorization - principals", () => {
  it("principal - the first SAN URI wins over DNS names and the CN", () => {
    expect(principalOf(certificate({ san: "DNS:client.local, URI:spiffe://tally/a, URI:spiffe://tally/b", cn: "cn" }))).to.equal("spiffe://tally/a");
  });

  it("principal - a JSON-quoted SAN URI (holding a comma) is read whole", () => {
    expect(principalOf(certificate({ san: 'URI:"spiffe://tally/a,b"', cn: "cn" }))).to.equal("spiffe://tally/a,b");
  });

  it("principal - without a SAN URI the CN is the principal; without either there is none", () => {
    expect(principalOf(certificate({ san: "DNS:client.local", cn: "reporting" }))).to.equal("reporting");
    expect(principalOf(certificate({}))).to.equal(undefined);
    expect(principalOf(undefined)).to.equal(undefined);
  });
});

describe("grpc authorization - access table and scope", () => {
  it("access - every Balances and Admin method of the contract is in the table; only Health needs no role", () => {
    const contract = [...Object.values(BalancesService), ...Object.values(AdminService)].map((m) => m.path);
    expect(contract.length).to.equal(18);
    for (const path of contract) expect(METHOD_ACCESS[path], path).to.not.equal(undefined);
    for (const [path, access] of Object.entries(METHOD_ACCESS)) {
      if (path.startsWith("/grpc.health.v1.Health/")) expect(access.roles, path).to.equal("any-principal");
      else expect(access.roles, path).to.not.equal("any-principal");
    }
    expect(rolesAllow(METHOD_ACCESS["/tally.v1.Balances/Debit"]!, new Set())).to.equal(false);
    expect(rolesAllow(METHOD_ACCESS["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"]!, new Set())).to.equal(false);
    expect(rolesAllow(METHOD_ACCESS["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"]!, new Set(["reader"]))).to.equal(true);
    expect(rolesAllow(METHOD_ACCESS["/tally.v1.Admin/Settle"]!, new Set(ROLES.filter((r) => r !== "operator")))).to.equal(false);
  });

  it("scope - an account is in scope exactly when some prefix starts it; a call over every account never is", () => {
    const id = fc.stringMatching(/^[a-z/]{0,6}$/);
    fc.assert(
      fc.property(fc.array(id, { maxLength: 5 }), fc.array(id.filter((p) => p !== ""), { minLength: 1, maxLength: 3 }), (accounts, prefixes) => {
        const outside = scopeViolation(accounts, prefixes);
        const expected = accounts.find((a) => !prefixes.some((p) => a.startsWith(p)));
        expect(outside).to.equal(expected);
        expect(scopeViolation("every", prefixes)).to.equal("every");
      }),
    );
  });

  it("scope - a batch names every item's account", () => {
    const accounts = METHOD_ACCESS["/tally.v1.Balances/DebitBatch"]!.accounts({ debits: [{ accountId: "a/1" }, { accountId: "b/2" }] });
    expect(accounts).to.deep.equal(["a/1", "b/2"]);
    expect(METHOD_ACCESS["/tally.v1.Admin/ListOverspends"]!.accounts({ accountId: "" })).to.equal("every");
    expect(METHOD_ACCESS["/tally.v1.Admin/ListOverspends"]!.accounts({ accountId: "a/1" })).to.deep.equal(["a/1"]);
  });

  it("access - holds go to spender, refunds to granter; capture, void and refund are audited and scoped by their optional account", () => {
    const access = (method: string) => METHOD_ACCESS[`/tally.v1.Balances/${method}`]!;
    expect(access("Hold")).to.include({ audited: false }).and.have.property("roles").that.deep.equals(["spender"]);
    for (const method of ["CaptureHold", "VoidHold"]) expect(access(method)).to.include({ audited: true }).and.have.property("roles").that.deep.equals(["spender"]);
    expect(access("Refund")).to.include({ audited: true }).and.have.property("roles").that.deep.equals(["granter"]);
    expect(access("Hold").accounts({ accountId: "t/1" })).to.deep.equal(["t/1"]);
    for (const method of ["CaptureHold", "VoidHold", "Refund"]) {
      expect(access(method).accounts({ accountId: "" }), method).to.equal("every");
      expect(access(method).accounts({ accountId: "t/1" }), method).to.deep.equal(["t/1"]);
    }
  });
});
