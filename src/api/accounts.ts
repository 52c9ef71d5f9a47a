// Discovery endpoints any valid token may call: `GET /accounts` lists the installation's one
// account so a client can find its `account_id` (ARCHITECTURE.md §2), and
// `GET /user/tokens/verify` is Cloudflare's token check.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { parseInput } from './errors.ts';
import { type ApiContext, defineRoute } from './framework.ts';
import { pageOf, pageQueryShape } from './pagination.ts';

// Cloudflare's account list also takes `name` and `direction`; with one account they change nothing.
export const listQuery = z.strictObject({
  ...pageQueryShape(20),
  name: z.string().max(350).optional(),
  direction: z.enum(['asc', 'desc']).optional(),
});

export function registerAccountRoutes(app: FastifyInstance, ctx: ApiContext): void {
  defineRoute(app, 'accounts.list', async (request) => {
    const query = parseInput(listQuery, request.query, 'query');
    const account = (await ctx.gateway.repos.accounts.get())!;
    const visible = request.apiToken!.accountId === account.accountId;
    const accounts = visible
      ? [
          {
            id: account.accountId,
            name: account.name,
            type: 'standard',
            settings: {},
            created_on: account.createdAt,
          },
        ]
      : [];
    return pageOf(query, accounts);
  });

  defineRoute(app, 'tokens.verify', async (request) => {
    const token = request.apiToken!;
    return {
      result: {
        id: token.id,
        status: 'active',
        ...(token.expiresOn !== null && { expires_on: token.expiresOn }),
      },
    };
  });
}
