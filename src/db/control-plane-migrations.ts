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
  {
    version: 3,
    name: 'identity: users, roles, groups, sessions, scoped keys, machine clients',
    sql: `
      -- A user belongs to one tenant or to none (a global admin). Login names are unique across
      -- all tenants, so the tenant follows from the user.
      CREATE TABLE tenantry.users (
        id uuid PRIMARY KEY,
        tenant_id uuid REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
        email text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
        name text,
        status text NOT NULL CHECK (status IN ('active', 'inactive')),
        global_admin boolean NOT NULL DEFAULT false,
        password_hash text,
        setup_token_hash bytea UNIQUE,
        setup_expires_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        last_login_at timestamptz,
        CHECK (NOT global_admin OR tenant_id IS NULL),
        UNIQUE (tenant_id, id)
      );
      CREATE UNIQUE INDEX users_email_key ON tenantry.users (email);
      CREATE INDEX users_tenant_idx ON tenantry.users (tenant_id, email);

      CREATE TABLE tenantry.roles (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
        name text NOT NULL,
        built_in text CHECK (built_in IN ('tenant-admin', 'member', 'read-only')),
        permissions text[] NOT NULL DEFAULT '{}',
        is_default boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (tenant_id, name),
        UNIQUE (tenant_id, id)
      );
      CREATE UNIQUE INDEX roles_default_key ON tenantry.roles (tenant_id) WHERE is_default;

      CREATE TABLE tenantry.groups (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
        name text NOT NULL,
        root boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (tenant_id, name),
        UNIQUE (tenant_id, id)
      );
      CREATE UNIQUE INDEX groups_root_key ON tenantry.groups (tenant_id) WHERE root;

      -- Composite foreign keys: a membership can only join a user, role and group of one tenant.
      CREATE TABLE tenantry.user_roles (
        tenant_id uuid NOT NULL,
        user_id uuid NOT NULL,
        role_id uuid NOT NULL,
        PRIMARY KEY (user_id, role_id),
        FOREIGN KEY (tenant_id, user_id) REFERENCES tenantry.users (tenant_id, id) ON DELETE CASCADE,
        FOREIGN KEY (tenant_id, role_id) REFERENCES tenantry.roles (tenant_id, id) ON DELETE CASCADE
      );
      CREATE INDEX user_roles_role_idx ON tenantry.user_roles (role_id);
      CREATE TABLE tenantry.group_members (
        tenant_id uuid NOT NULL,
        group_id uuid NOT NULL,
        user_id uuid NOT NULL,
        PRIMARY KEY (group_id, user_id),
        FOREIGN KEY (tenant_id, group_id) REFERENCES tenantry.groups (tenant_id, id) ON DELETE CASCADE,
        FOREIGN KEY (tenant_id, user_id) REFERENCES tenantry.users (tenant_id, id) ON DELETE CASCADE
      );
      CREATE INDEX group_members_user_idx ON tenantry.group_members (user_id);
      CREATE TABLE tenantry.group_roles (
        tenant_id uuid NOT NULL,
        group_id uuid NOT NULL,
        role_id uuid NOT NULL,
        PRIMARY KEY (group_id, role_id),
        FOREIGN KEY (tenant_id, group_id) REFERENCES tenantry.groups (tenant_id, id) ON DELETE CASCADE,
        FOREIGN KEY (tenant_id, role_id) REFERENCES tenantry.roles (tenant_id, id) ON DELETE CASCADE
      );
      CREATE INDEX group_roles_role_idx ON tenantry.group_roles (role_id);

      -- Opaque session tokens, stored only as their SHA-256 (they carry 256 random bits).
      CREATE TABLE tenantry.sessions (
        id uuid PRIMARY KEY,
        token_hash bytea NOT NULL UNIQUE,
        user_id uuid NOT NULL REFERENCES tenantry.users (id) ON DELETE CASCADE,
        tenant_id uuid REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        revoked_at timestamptz,
        last_used_at timestamptz,
        client_address text,
        user_agent text
      );
      CREATE INDEX sessions_user_idx ON tenantry.sessions (user_id) WHERE revoked_at IS NULL;
      CREATE INDEX sessions_tenant_idx ON tenantry.sessions (tenant_id) WHERE revoked_at IS NULL;
      CREATE INDEX sessions_expires_idx ON tenantry.sessions (expires_at);

      -- Scoped keys: null permissions means every tenant permission (keys made by operators).
      ALTER TABLE tenantry.api_keys
        ADD COLUMN permissions text[],
        ADD COLUMN created_by uuid REFERENCES tenantry.users (id) ON DELETE SET NULL;

      -- Machines. A client whose tenant is gone keeps its row, orphaned (tenant_id null).
      CREATE TABLE tenantry.clients (
        id uuid PRIMARY KEY,
        client_id text NOT NULL UNIQUE,
        tenant_id uuid REFERENCES tenantry.tenants (id) ON DELETE SET NULL,
        name text NOT NULL,
        salt bytea NOT NULL,
        hash bytea NOT NULL,
        iterations integer NOT NULL CHECK (iterations >= 100000),
        created_by text NOT NULL,
        inventory jsonb NOT NULL DEFAULT '{}'::jsonb,
        connection_token_hash bytea UNIQUE,
        connected_at timestamptz,
        last_seen_at timestamptz,
        last_address text,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
      );
      CREATE INDEX clients_tenant_idx ON tenantry.clients (tenant_id, created_at);
    `,
  },
  {
    version: 4,
    name: 'static tenants: which tenants and fields the config file manages',
    sql: `
      -- managed_by: the config file that declares the tenant (null: managed through the API only).
      -- managed_fields: what that file declares (name, hosts, plan, ...), refused to the admin API.
      -- config_released_at: the sync deactivated the tenant because the file stopped declaring it,
      -- so declaring it again activates it (a tenant an operator deactivated stays inactive).
      ALTER TABLE tenantry.tenants
        ADD COLUMN managed_by text,
        ADD COLUMN managed_fields text[] NOT NULL DEFAULT '{}',
        ADD COLUMN config_released_at timestamptz;
      CREATE INDEX tenants_managed_idx ON tenantry.tenants (slug) WHERE managed_by IS NOT NULL;
    `,
  },
  {
    version: 5,
    name: 'login names in Unicode NFC, as they are now looked up',
    sql: `
      -- A name stored decomposed could no longer log in. One whose NFC spelling another account
      -- already has keeps its spelling (an operator merges or renames it): the migration never fails.
      -- normalize() needs a UTF8 database; in any other encoding no name can be decomposed Unicode.
      -- The encoding test has no column in it: PostgreSQL checks it once, before reading any row.
      UPDATE tenantry.users u SET email = normalize(u.email, NFC)
       WHERE current_setting('server_encoding') = 'UTF8'
         AND u.email IS NOT NFC NORMALIZED
         AND NOT EXISTS (SELECT 1 FROM tenantry.users o WHERE o.email = normalize(u.email, NFC));
    `,
  },
  {
    version: 6,
    name: 'hosts compared by their confusable skeleton',
    sql: `
      -- skeleton: the host as it looks (Unicode confusables mapped to what they imitate, case
      -- folded: straße and strasse, ıcme and icme, have one skeleton). Two tenants may not hold
      -- hosts that look alike. Filled in by the engine (the mapping is not SQL); null until then.
      ALTER TABLE tenantry.tenant_hosts ADD COLUMN skeleton text;
      CREATE INDEX tenant_hosts_skeleton_idx ON tenantry.tenant_hosts (skeleton);
    `,
  },
  {
    version: 7,
    name: 'tenants being restored from a backup',
    sql: `
      -- restoring: a tenant a restore is building from an archive. Like provisioning it never
      -- resolves; unlike provisioning, a repair cannot finish it (the archive is not at hand), so
      -- a repair removes it and a rerun of the restore starts over.
      ALTER TABLE tenantry.tenants DROP CONSTRAINT tenants_status_check;
      ALTER TABLE tenantry.tenants ADD CONSTRAINT tenants_status_check
        CHECK (status IN ('provisioning', 'restoring', 'active', 'inactive', 'deleted'));
    `,
  },
  {
    version: 8,
    name: 'jobs: long operations run in the background, followed by id',
    sql: `
      -- A job is run by the process that accepted it; heartbeat_at says it is still at it (a job
      -- whose heartbeat stopped was interrupted: its process died). file: what it made (a backup,
      -- an export), downloadable while it exists. A purged tenant's jobs stay, their tenant null:
      -- a backup outlives its tenant.
      CREATE TABLE tenantry.jobs (
        id uuid PRIMARY KEY,
        kind text NOT NULL,
        tenant_id uuid REFERENCES tenantry.tenants (id) ON DELETE SET NULL,
        status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
        actor text NOT NULL,
        input jsonb NOT NULL DEFAULT '{}'::jsonb,
        progress jsonb,
        result jsonb,
        error jsonb,
        file text,
        created_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        heartbeat_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX jobs_tenant_idx ON tenantry.jobs (tenant_id, kind, created_at);
      CREATE INDEX jobs_running_idx ON tenantry.jobs (kind) WHERE status = 'running';
    `,
  },
  {
    version: 9,
    name: 'tenant moves between isolation levels and servers; cancellable jobs',
    sql: `
      -- One move per tenant at a time. The tenant row's isolation and server say which copy
      -- serves; this record says where the other copy is: before the flip (phase copying) the
      -- target being filled, after it (phase flipped) the source waiting to be dropped.
      CREATE TABLE tenantry.tenant_moves (
        tenant_id uuid PRIMARY KEY REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
        job_id uuid,
        from_isolation text NOT NULL CHECK (from_isolation IN ('row', 'schema', 'database')),
        from_server text REFERENCES tenantry.database_servers (name),
        to_isolation text NOT NULL CHECK (to_isolation IN ('row', 'schema', 'database')),
        to_server text REFERENCES tenantry.database_servers (name),
        phase text NOT NULL CHECK (phase IN ('copying', 'flipped')),
        keep_source boolean NOT NULL DEFAULT false,
        started_at timestamptz NOT NULL DEFAULT now(),
        flipped_at timestamptz,
        stats jsonb NOT NULL DEFAULT '{}'::jsonb
      );
      -- Set by a cancel request; the job's process reads it with its heartbeat and stops.
      ALTER TABLE tenantry.jobs ADD COLUMN cancel_requested_at timestamptz;
    `,
  },
];

export const latestControlPlaneVersion = controlPlaneMigrations.at(-1)?.version ?? 0;
