// The OpenAPI 3.1 document at GET /client/v4/openapi.json: served without a token, and every
// route of the table in it with its method, path parameters, query parameters, request body
// schema and permission groups. No validator package is installed, so the structure is checked
// here against the OpenAPI 3.1 rules the document relies on.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ROUTE_SCHEMAS } from '../../src/api/openapi.ts';
import { ANY_TOKEN, API_ROUTES, type RouteId } from '../../src/api/routes.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';

/** Routes that act on the path alone: no body to describe. */
const BODILESS = new Set<RouteId>(['apps.revoke_tokens', 'app_policies.make_reusable']);

describe('OpenAPI document', () => {
  let gateway: TestGateway;
  // biome-ignore lint/suspicious/noExplicitAny: the document is checked field by field.
  let doc: any;
  beforeAll(async () => {
    gateway = await startTestGateway();
    const response = await fetch(`${gateway.url}/client/v4/openapi.json`);
    expect(response.status).toBe(200);
    doc = await response.json();
  });
  afterAll(async () => {
    await gateway?.close();
  });

  test('has the OpenAPI 3.1 top-level structure', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(typeof doc.info.title).toBe('string');
    expect(typeof doc.info.version).toBe('string');
    expect(doc.servers).toEqual([{ url: `${gateway.url}/client/v4` }]);
    expect(doc.components.securitySchemes.bearerAuth).toEqual({ type: 'http', scheme: 'bearer' });
    for (const [path, item] of Object.entries(doc.paths)) {
      expect(path.startsWith('/')).toBe(true);
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((match) => match[1]);
      // biome-ignore lint/suspicious/noExplicitAny: operations are checked field by field.
      for (const [method, operation] of Object.entries(item as Record<string, any>)) {
        expect(['get', 'put', 'post', 'delete', 'patch']).toContain(method);
        // Every templated segment is declared as a required path parameter, and no other.
        const pathParams = operation.parameters.filter((p: { in: string }) => p.in === 'path');
        expect(pathParams.map((p: { name: string }) => p.name).sort()).toEqual([...templated].sort());
        for (const parameter of operation.parameters) {
          expect(['path', 'query']).toContain(parameter.in);
          if (parameter.in === 'path') expect(parameter.required).toBe(true);
          expect(typeof parameter.schema).toBe('object');
        }
        const names = operation.parameters.map((p: { in: string; name: string }) => `${p.in}:${p.name}`);
        expect(new Set(names).size).toBe(names.length);
        expect(Object.keys(operation.responses).length).toBeGreaterThan(0);
        if (operation.requestBody) {
          expect(operation.requestBody.content['application/json'].schema).toBeTypeOf('object');
        }
      }
    }
    const ids = Object.values(doc.paths).flatMap((item) =>
      Object.values(item as object).map((op) => op.operationId),
    );
    expect(new Set(ids).size).toBe(ids.length);
  });

  test.each(Object.keys(API_ROUTES) as RouteId[])('%s', (id) => {
    const spec = API_ROUTES[id];
    const operation = doc.paths[spec.path.replace(/:([a-z_]+)/g, '{$1}')]?.[spec.method.toLowerCase()];
    expect(operation?.operationId).toBe(id);
    expect(operation['x-api-token-group']).toEqual(spec.permissions === ANY_TOKEN ? [] : spec.permissions);
    const schemas = ROUTE_SCHEMAS[id];
    if (schemas?.query) {
      const queryNames = operation.parameters
        .filter((p: { in: string }) => p.in === 'query')
        .map((p: { name: string }) => p.name);
      expect(queryNames.length).toBeGreaterThan(0);
      // Lists page; user_policy_checks ends in "s" but answers one object.
      const isList = spec.path.endsWith('s') && spec.method === 'GET' && id !== 'apps.user_policy_checks';
      if (isList) expect(queryNames).toContain('per_page');
    }
    const needsBody = ['POST', 'PUT', 'PATCH'].includes(spec.method) && !BODILESS.has(id);
    expect(Boolean(operation.requestBody), `${id} request body`).toBe(needsBody);
    if (needsBody) {
      const schema = operation.requestBody.content['application/json'].schema;
      expect(schema.type === 'object' || Array.isArray(schema.anyOf) || Array.isArray(schema.oneOf)).toBe(
        true,
      );
    }
  });

  test('describes the service token body precisely', () => {
    const create =
      doc.paths['/accounts/{account_id}/access/service_tokens'].post.requestBody.content['application/json']
        .schema;
    expect(create.required).toEqual(['name']);
    expect(create.additionalProperties).toBe(false);
    expect(Object.keys(create.properties)).toEqual(
      expect.arrayContaining(['name', 'duration', 'enabled', 'client_secret_version']),
    );
  });
});
