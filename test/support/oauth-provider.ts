// An MCP client's OAuth state for tests, in memory, for the MCP SDK client: the registered
// client, tokens and PKCE verifier; its user agent is a scripted browser or none at all.
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';

export interface TestOAuthProviderOptions {
  /** The first is the one authorization requests name. */
  redirectUris: string[];
  /**
   * Plays the user agent from an authorization URL to the redirect URI it ends on. Without it,
   * authorization URLs are only recorded, for the test to follow.
   */
  browse?: (url: URL) => Promise<URL>;
  /** A client ID metadata document's URL, used as client_id instead of registering. */
  clientMetadataUrl?: string;
  clientName?: string;
}

export class TestOAuthProvider implements OAuthClientProvider {
  client: OAuthClientInformationMixed | undefined;
  saved: OAuthTokens | undefined;
  verifier = '';
  /** The redirect URI the last authorization came back on (with its `code` or error). */
  callback: URL | null = null;
  authorizationUrls: URL[] = [];
  readonly clientMetadataUrl: string | undefined;

  constructor(private readonly options: TestOAuthProviderOptions) {
    this.clientMetadataUrl = options.clientMetadataUrl;
  }

  /** The last authorization URL the SDK sent the user agent to. */
  get authorizationUrl(): URL | null {
    return this.authorizationUrls.at(-1) ?? null;
  }
  get redirectUrl() {
    return this.options.redirectUris[0]!;
  }
  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: this.options.clientName ?? 'Gatehouse test MCP client',
      redirect_uris: this.options.redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    this.client = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens: OAuthTokens) {
    this.saved = tokens;
  }
  async redirectToAuthorization(url: URL) {
    this.authorizationUrls.push(url);
    if (this.options.browse) this.callback = await this.options.browse(url);
  }
  saveCodeVerifier(verifier: string) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
}
