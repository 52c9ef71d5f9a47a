// The OpenAPI 3.1 description of the management API, served at GET /client/v4/openapi.json
// without authentication (it describes shapes, never data). It is generated from the one route
// table (API_ROUTES: method, path, permission groups) and the zod schemas the handlers parse
// requests with, so the document cannot drift from what the server accepts. Cloudflare's own
// spec names each operation's permission groups in `x-api-token-group` (spec §1.2); so does this.
import { z } from 'zod';
import { groupInputSchema, policyInputSchema } from '../policy/index.ts';
import { listQuery as accountListQuery } from './accounts.ts';
import { listQuery as appListQuery } from './apps.ts';
import { saasSchema, selfHostedSchema } from './apps-schema.ts';
import { listQuery as groupListQuery } from './groups.ts';
import { identityProviderSchemas } from './identity-providers.ts';
import { keySchemas } from './keys.ts';
import { listSchemas } from './lists.ts';
import { logSchemas } from './logs.ts';
import { organizationSchemas } from './organizations.ts';
import { appPolicyListQuery, reusableListQuery } from './policies.ts';
import { ANY_TOKEN, API_ROUTES, type RouteId } from './routes.ts';
import { serviceTokenSchemas } from './service-tokens.ts';
import { tunnelSchemas } from './tunnels.ts';
import { userPolicyCheckSchemas } from './user-policy-checks.ts';
import { userSchemas } from './users.ts';

/** The zod schemas a route parses: its query string and its JSON body. */
export interface RequestSchemas {
  query?: z.ZodType;
  body?: z.ZodType;
}

export type RouteSchemas = Partial<Record<RouteId, RequestSchemas>>;

const appBody = z.union([selfHostedSchema, saasSchema]);

/** Every route's request schemas, keyed by route id. Routes absent here take no query and no body. */
export const ROUTE_SCHEMAS: RouteSchemas = {
  'accounts.list': { query: accountListQuery },
  'apps.list': { query: appListQuery },
  'apps.create': { body: appBody },
  'apps.update': { body: appBody },
  'app_policies.list': { query: appPolicyListQuery },
  'app_policies.create': { body: policyInputSchema },
  'app_policies.update': { body: policyInputSchema },
  'policies.list': { query: reusableListQuery },
  'policies.create': { body: policyInputSchema },
  'policies.update': { body: policyInputSchema },
  'groups.list': { query: groupListQuery },
  'groups.create': { body: groupInputSchema },
  'groups.update': { body: groupInputSchema },
  ...serviceTokenSchemas,
  ...identityProviderSchemas,
  ...organizationSchemas,
  ...keySchemas,
  ...userSchemas,
  ...userPolicyCheckSchemas,
  ...logSchemas,
  ...tunnelSchemas,
  ...listSchemas,
};

type JsonSchema = Record<string, unknown>;

function jsonSchema(schema: z.ZodType): JsonSchema {
  // Input side: what a client sends (defaults make fields optional; transforms are not the
  // client's concern). Refinements that JSON Schema cannot state are left to the error messages.
  const { $schema: _, ...rest } = z.toJSONSchema(schema, {
    io: 'input',
    unrepresentable: 'any',
  }) as JsonSchema;
  return rest;
}

const errorSchema: JsonSchema = {
  type: 'object',
  required: ['success', 'errors', 'messages', 'result'],
  properties: {
    success: { const: false },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        required: ['code', 'message'],
        properties: { code: { type: 'integer' }, message: { type: 'string' } },
      },
    },
    messages: { type: 'array' },
    result: { type: 'null' },
  },
};

const successSchema: JsonSchema = {
  type: 'object',
  required: ['success', 'errors', 'messages', 'result'],
  properties: {
    success: { const: true },
    errors: { type: 'array', maxItems: 0 },
    messages: { type: 'array' },
    result: {},
    result_info: {
      type: 'object',
      properties: Object.fromEntries(
        ['page', 'per_page', 'count', 'total_count', 'total_pages'].map((name) => [
          name,
          { type: 'integer' },
        ]),
      ),
    },
  },
};

function operation(id: RouteId) {
  const spec = API_ROUTES[id];
  const schemas = ROUTE_SCHEMAS[id] ?? {};
  const pathParameters = [...spec.path.matchAll(/:([a-z_]+)/g)].map((match) => ({
    name: match[1]!,
    in: 'path',
    required: true,
    schema: { type: 'string' },
  }));
  const query = schemas.query ? jsonSchema(schemas.query) : null;
  const required = new Set((query?.required as string[] | undefined) ?? []);
  const queryParameters = Object.entries(
    (query?.properties as Record<string, JsonSchema> | undefined) ?? {},
  ).map(([name, schema]) => ({ name, in: 'query', required: required.has(name), schema }));
  return {
    operationId: id,
    tags: [id.split('.')[0]!],
    'x-api-token-group': spec.permissions === ANY_TOKEN ? [] : [...spec.permissions],
    parameters: [...pathParameters, ...queryParameters],
    ...(schemas.body && {
      requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(schemas.body) } } },
    }),
    responses: {
      '2XX': { description: 'Success envelope', content: { 'application/json': { schema: successSchema } } },
      '4XX': { description: 'Error envelope', content: { 'application/json': { schema: errorSchema } } },
    },
  };
}

/** Builds the document; `serverUrl` is the API's base, e.g. `https://auth.example.com/client/v4`. */
export function openApiDocument(serverUrl: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const id of Object.keys(API_ROUTES) as RouteId[]) {
    const spec = API_ROUTES[id];
    const path = spec.path.replace(/:([a-z_]+)/g, '{$1}');
    paths[path] ??= {};
    paths[path][spec.method.toLowerCase()] = operation(id);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Gatehouse management API',
      version: '1',
      description:
        "Cloudflare Access's v4 API as Gatehouse serves it. Authenticate with `Authorization: Bearer <API token>`; `x-api-token-group` lists the permission groups that may call each operation.",
    },
    servers: [{ url: serverUrl }],
    security: [{ bearerAuth: [] }],
    components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
    paths,
  };
}
