/**
 * Control-plane schema, one numbered step per entry. A step is never edited once released:
 * a change is a new step. Each runs in its own transaction under the migration lock.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const controlPlaneMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'tenants, hosts, api keys, audit log, settings',
    sql: `
      CREATE TABLE tenantry.tenants (
        id uuid PRIMARY KEY,
        slug text NOT NULL,
        name text NOT NULL,
        status text NOT NULL CHECK (status IN ('provisioning', 'active', 'inactive', 'deleted')),
        isolation text NOT NULL CHECK (isolation IN ('row', 'schema', 'database')),
        config jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        deleted_at timestamptz
      );
      -- A deleted tenant releases its slug; live tenants never share one.
      CREATE UNIQUE INDEX tenants_slug_key ON tenantry.tenants (slug) WHERE status <> 'deleted';
      CREATE INDEX tenants_status_idx ON tenantry.tenants (status, created_at);

      CREATE TABLE tenantry.tenant_hosts (
        host text PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX tenant_hosts_tenant_idx ON tenantry.tenant_hosts (tenant_id);

      CREATE TABLE tenantry.api_keys (
        id uuid PRIMARY KEY,
        key_id text NOT NULL UNIQUE,
        tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
        name text NOT NULL,
        salt bytea NOT NULL,
        hash bytea NOT NULL,
        iterations integer NOT NULL CHECK (iterations >= 100000),
        created_at timestamptz NOT NULL DEFAULT now(),
        last_used_at timestamptz,
        revoked_at timestamptz,
        expires_at timestamptz
      );
      CREATE INDEX api_keys_tenant_idx ON tenantry.api_keys (tenant_id, created_at);

      CREATE TABLE tenantry.audit_log (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        actor text NOT NULL,
        action text NOT NULL,
        tenant_id uuid,
        target text,
        outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
        client_address text,
        details jsonb NOT NULL DEFAULT '{}'::jsonb
      );
      CREATE INDEX audit_log_at_idx ON tenantry.audit_log (at);
      CREATE INDEX audit_log_tenant_idx ON tenantry.audit_log (tenant_id, at);
      CREATE INDEX audit_log_action_idx ON tenantry.audit_log (action, at);

      CREATE TABLE tenantry.settings (
        key text PRIMARY KEY,
        value jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 2,
    name: 'entity-schema ledger, database servers, resumable purge',
    sql: `
      -- Every declaration of the entities that was applied, numbered; tables record the version they were built at.
      CREATE TABLE tenantry.entity_versions (
        version integer PRIMARY KEY,
        digest text NOT NULL,
        entities jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );

      -- The version of the tables shared by many tenants: 'row' (schema app) and 'shared'.
      CREATE TABLE tenantry.storage_versions (
        storage text PRIMARY KEY CHECK (storage IN ('row', 'shared')),
        version integer NOT NULL REFERENCES tenantry.entity_versions (version),
        migrated_at timestamptz NOT NULL DEFAULT now()
      );

      -- PostgreSQL servers that hold database tenants; 'main' is the control plane's own server.
      CREATE TABLE tenantry.database_servers (
        name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,39}$'),
        url text,
        admin_url text,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      INSERT INTO tenantry.database_servers (name) VALUES ('main');

      -- Pre-built databases at one entity version that new database tenants are copied from.
      CREATE TABLE tenantry.database_templates (
        server text NOT NULL REFERENCES tenantry.database_servers (name),
        version integer NOT NULL REFERENCES tenantry.entity_versions (version),
        name text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (server, version)
      );

      ALTER TABLE tenantry.tenants
        ADD COLUMN schema_version integer REFERENCES tenantry.entity_versions (version),
        ADD COLUMN server text REFERENCES tenantry.database_servers (name),
        ADD COLUMN purge_requested_at timestamptz,
        ADD COLUMN migration_error text;
      UPDATE tenantry.tenants SET server = 'main' WHERE isolation = 'database';
      CREATE INDEX tenants_schema_version_idx ON tenantry.tenants (schema_version, id) WHERE status <> 'deleted';
      CREATE INDEX tenants_purge_idx ON tenantry.tenants (id) WHERE purge_requested_at IS NOT NULL;
    `,
  },
];

export const latestControlPlaneVersion = controlPlaneMigrations.at(-1)?.version ?? 0;
