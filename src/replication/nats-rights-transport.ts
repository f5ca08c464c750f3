// Rights asks and gifts over NATS request/reply on `tally.rights.<region>`.
// Every decode is guarded: a malformed message is counted and dropped, never
// thrown inside a subscription callback (that would stop the client's reader).

import type { NatsConnection } from "nats";
import { RightsReply, RightsRequest } from "../generated/tally/replication/v1/replication";
import type { RightsAsk, RightsGift, RightsTransport } from "../core/rights-messages";
import { rightsSubject } from "./subjects";

export type BadMessageSink = (source: string, subject: string, reason: string) => void;

export class NatsRightsTransport implements RightsTransport {
  constructor(
    private readonly connection: NatsConnection,
    private readonly region: string,
    private readonly badMessage: BadMessageSink,
  ) {}

  async ask(donor: string, ask: RightsAsk, timeoutMs: number): Promise<RightsGift | undefined> {
    const payload = RightsRequest.encode({ accountId: ask.accountId, requester: ask.requester, deficit: ask.deficit }).finish();
    let data: Uint8Array;
    try {
      data = (await this.connection.request(rightsSubject(donor), payload, { timeout: timeoutMs })).data;
    } catch {
      return undefined;
    }
    try {
      const reply = RightsReply.decode(data);
      return {
        donor: reply.donor,
        granted: reply.granted,
        transferredTotal: reply.transferredTotal,
        donorRights: reply.donorRights,
        accountCounter: reply.accountCounter,
      };
    } catch (error) {
      this.badMessage("rights_reply", rightsSubject(donor), String(error));
      return undefined;
    }
  }

  serve(donate: (ask: RightsAsk) => Promise<RightsGift>): () => void {
    const subject = rightsSubject(this.region);
    const subscription = this.connection.subscribe(subject, {
      callback: (error, message) => {
        if (error !== null) return;
        let ask: RightsAsk;
        try {
          const request = RightsRequest.decode(message.data);
          ask = { accountId: request.accountId, requester: request.requester, deficit: request.deficit };
        } catch (decodeError) {
          this.badMessage("rights_request", subject, String(decodeError));
          return;
        }
        donate(ask).then(
          (gift) => {
            if (message.reply !== undefined && message.reply !== "") message.respond(RightsReply.encode({ ...gift, accountCounter: [...gift.accountCounter] }).finish());
          },
          () => undefined,
        );
      },
    });
    return () => subscription.unsubscribe();
  }
}
