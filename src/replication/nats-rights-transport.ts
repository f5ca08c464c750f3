// Batches of rights asks and gifts over NATS request/reply on
// `tally.rights.<region>`. Every decode is guarded (rights-codec.ts): a
// malformed, foreign-cluster or impossible batch is counted and dropped
// whole, never thrown inside a subscription callback (that would stop the
// client's reader).

import type { NatsConnection } from "nats";
import type { ReplicaSet } from "../core/replica-set";
import type { RightsBatchAsk, RightsBatchGift, RightsTransport } from "../core/rights-messages";
import { clusterIdentityOf, inboundContext, type InboundContext } from "./inbound";
import { decodeRightsReply, decodeRightsRequest, encodeRightsReply, encodeRightsRequest } from "./rights-codec";
import { rightsSubject } from "./subjects";

export type BadMessageSink = (source: string, subject: string, reason: string) => void;

export class NatsRightsTransport implements RightsTransport {
  private readonly ctx: InboundContext;

  constructor(
    private readonly connection: NatsConnection,
    private readonly region: string,
    replicas: ReplicaSet,
    private readonly badMessage: BadMessageSink,
    maxSlotValue: bigint,
  ) {
    this.ctx = inboundContext(replicas, { maxSlotValue });
  }

  async ask(donor: string, batch: RightsBatchAsk, timeoutMs: number): Promise<RightsBatchGift | undefined> {
    const payload = encodeRightsRequest(batch, this.ctx.identity);
    let data: Uint8Array;
    try {
      data = (await this.connection.request(rightsSubject(donor), payload, { timeout: timeoutMs })).data;
    } catch {
      return undefined;
    }
    const asked = new Set(batch.asks.map((ask) => ask.accountId));
    const reply = decodeRightsReply(data, { ...this.ctx, self: this.region, expectedDonor: donor }, asked);
    if (!reply.ok) {
      this.badMessage("rights_reply", rightsSubject(donor), reply.reason);
      return undefined;
    }
    return reply.value;
  }

  serve(donate: (batch: RightsBatchAsk) => Promise<RightsBatchGift>): () => void {
    const subject = rightsSubject(this.region);
    const subscription = this.connection.subscribe(subject, {
      callback: (error, message) => {
        if (error !== null) return;
        const request = decodeRightsRequest(message.data, { ...this.ctx, self: this.region });
        if (!request.ok) {
          this.badMessage("rights_request", subject, request.reason);
          return;
        }
        donate(request.value).then(
          (gift) => {
            if (message.reply !== undefined && message.reply !== "") message.respond(encodeRightsReply(gift, clusterIdentityOf(this.ctx.replicas)));
          },
          () => undefined,
        );
      },
    });
    return () => subscription.unsubscribe();
  }
}
