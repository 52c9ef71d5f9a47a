// oidc-provider ships no types. src/oidc/engine.ts describes the parts it uses itself (OidcLibrary);
// this declaration is what lets the module be imported at all, and what the upstream-IdP tests use.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export default class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
  }
}
