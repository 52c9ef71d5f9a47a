// `last_used_on` of API tokens, recorded in memory and flushed in one transaction every few
// seconds and on close: a management call must not cost a database write of its own.
import type { ApiTokenRepository } from '../store/repositories/api-tokens.ts';

export class TokenUsageRecorder {
  private pending = new Map<string, string>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly tokens: ApiTokenRepository,
    private readonly onError: (error: unknown) => void,
    flushEveryMs = 5_000,
  ) {
    this.timer = setInterval(() => void this.flush(), flushEveryMs);
    this.timer.unref();
  }

  touch(tokenId: string, at: Date = new Date()): void {
    this.pending.set(tokenId, at.toISOString());
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      await this.tokens.recordUse(batch);
    } catch (error) {
      // Keep the newest time per token for the next attempt.
      for (const [id, at] of batch) if (!this.pending.has(id)) this.pending.set(id, at);
      this.onError(error);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
