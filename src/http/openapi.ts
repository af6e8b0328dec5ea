import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { TENANTRY_VERSION } from '../version.js';

/** Tenantry's mark: three tenants side by side on one foundation, in the docs' top bar and tab. */
const LOGO_SVG = Buffer.from(
  `<svg xmlns="http://www.w3.org/2000/svg" width="150" height="40" viewBox="0 0 150 40">
  <rect x="2" y="30" width="36" height="6" rx="1" fill="#1f6feb"/>
  <rect x="4" y="12" width="9" height="16" rx="1" fill="#58a6ff"/>
  <rect x="15.5" y="6" width="9" height="22" rx="1" fill="#58a6ff"/>
  <rect x="27" y="16" width="9" height="12" rx="1" fill="#58a6ff"/>
  <text x="46" y="28" font-family="Helvetica, Arial, sans-serif" font-size="20" font-weight="700" fill="#ffffff">Tenantry</text>
</svg>`,
);

const SECURITY_SCHEMES = {
  adminToken: { type: 'http', scheme: 'bearer', description: 'The operator admin token' },
  apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'A tenant API key' },
  sessionBearer: {
    type: 'http',
    scheme: 'bearer',
    description: 'A user session token from POST /auth/login (a global admin’s on admin routes)',
  },
  clientToken: {
    type: 'http',
    scheme: 'bearer',
    description: 'A machine client’s connection token from POST /clients/connect',
  },
  sessionCookie: {
    type: 'apiKey',
    in: 'cookie',
    name: 'tenantry_session',
    description: 'The session cookie POST /auth/login sets (tenant routes only)',
  },
} as const;

/** The OpenAPI document of every route (from their schemas), at /openapi.json, and its docs page at /docs. */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Tenantry',
        version: TENANTRY_VERSION,
        description: 'Multi-tenant backend: admin and tenant routes',
      },
      components: { securitySchemes: SECURITY_SCHEMES },
    },
  });
}

/** Registered last: the document covers every route registered before it. */
export async function registerOpenApiDocs(app: FastifyInstance): Promise<void> {
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  // The interactive docs page serves its own bundled assets: no CDN, works offline.
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    logo: { type: 'image/svg+xml', content: LOGO_SVG, href: '/docs', target: '_self' },
    theme: {
      title: 'Tenantry API',
      favicon: [
        { filename: 'favicon.svg', rel: 'icon', sizes: '40x40', type: 'image/svg+xml', content: LOGO_SVG },
      ],
    },
  });
}
