// The management API as a Fastify plugin, mounted at /client/v4 on the team domain (and on
// --api-listen) by src/server.ts. Everything under the prefix answers in Cloudflare's envelope,
// including unknown routes and Fastify's own body-parsing errors.
import type { FastifyPluginAsync } from 'fastify';
import type { Gateway } from '../gateway.ts';
import { registerAccountRoutes } from './accounts.ts';
import { registerAppRoutes } from './apps.ts';
import { authenticate, createApiContext, handleError, handleNotFound } from './framework.ts';
import { registerGroupRoutes } from './groups.ts';
import { registerIdentityProviderRoutes } from './identity-providers.ts';
import { registerKeyRoutes } from './keys.ts';
import { registerListRoutes } from './lists.ts';
import { registerLogRoutes } from './logs.ts';
import { openApiDocument } from './openapi.ts';
import { registerOrganizationRoutes } from './organizations.ts';
import { registerPolicyRoutes } from './policies.ts';
import { registerServiceTokenRoutes } from './service-tokens.ts';
import { TokenUsageRecorder } from './token-usage.ts';
import { registerTunnelRoutes } from './tunnels.ts';
import { registerUserPolicyCheckRoutes } from './user-policy-checks.ts';
import { registerUserRoutes } from './users.ts';

export const API_PREFIX = '/client/v4';

export function managementApi(gateway: Gateway): FastifyPluginAsync {
  return async (app) => {
    // JSON only: Fastify's default text/plain parser would hand strings to the handlers.
    app.removeContentTypeParser('text/plain');
    const usage = new TokenUsageRecorder(gateway.repos.apiTokens, (error) =>
      app.log.warn({ err: error }, 'could not record API token use'),
    );
    app.addHook('onClose', async () => usage.close());
    app.decorateRequest('apiToken', null);
    app.addHook('onRequest', authenticate(gateway, usage));
    app.setErrorHandler(handleError);
    app.setNotFoundHandler(handleNotFound);

    const ctx = createApiContext(gateway);
    registerAccountRoutes(app, ctx);
    registerAppRoutes(app, ctx);
    registerUserPolicyCheckRoutes(app, ctx);
    registerPolicyRoutes(app, ctx);
    registerGroupRoutes(app, ctx);
    registerServiceTokenRoutes(app, ctx);
    registerIdentityProviderRoutes(app, ctx);
    registerOrganizationRoutes(app, ctx);
    registerKeyRoutes(app, ctx);
    registerUserRoutes(app, ctx);
    registerLogRoutes(app, ctx);
    registerTunnelRoutes(app, ctx);
    registerListRoutes(app, ctx);

    // Not in API_ROUTES: it needs no token (it describes shapes, never data), so the
    // authentication hook, which acts only on routes from the table, lets it through.
    const openApi = openApiDocument(`${gateway.settings.teamDomain}${API_PREFIX}`);
    app.get('/openapi.json', async () => openApi);
  };
}
