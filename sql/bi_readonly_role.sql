-- A read-only role for BI tools on the warehouse schema.
--
-- The role gets USAGE on the schema, SELECT on every table and view in it, and SELECT on
-- the tables and views created there later (default privileges). Nothing else: no INSERT,
-- UPDATE, DELETE, TRUNCATE, no CREATE in the schema, and it cannot drop what it does not own.
--
-- Run it as the warehouse user (the one in CUSTOMER_ANALYTICS_DB_URL: it owns the tables and
-- creates the future ones, so the default privileges must be its own) with CREATEROLE:
--
--   psql "postgresql://etl@db-host:5432/shop" -v role=bi_reader -v schema=customer_analytics \
--        -f sql/bi_readonly_role.sql
--
-- `role` defaults to bi_reader, `schema` to customer_analytics. psql quotes both as identifiers
-- (:"role"), and the names are checked below, so no name reaches SQL as text. The role is
-- created with LOGIN and no password; give it one without it appearing anywhere (psql sends
-- only the SCRAM hash):  \password bi_reader
--
-- `customer-analytics create-bi-role [--role NAME]` applies the same statements (the
-- privilege block between the markers below is the CLI's, statement for statement, as
-- customer_analytics_tests/test_security.py checks) and reads the password, if any, from
-- CUSTOMER_ANALYTICS_BI_PASSWORD. Rerunning either is harmless: it resets the role's
-- privileges on the schema to exactly these.

\set ON_ERROR_STOP on
\if :{?role}
\else
  \set role bi_reader
\endif
\if :{?schema}
\else
  \set schema customer_analytics
\endif

BEGIN;

-- Refuse, with a reason and before anything is changed, a name that is not a plain identifier,
-- a schema that does not exist, or a role that could already do more than read: granting it
-- "read-only" would change nothing, and revoking its privileges could break the pipeline.
SELECT format('DO $bi_check$BEGIN RAISE EXCEPTION %L; END$bi_check$', problem)
FROM (
  SELECT CASE
    WHEN :'role' !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$'
      THEN 'role: use letters, digits and underscores, starting with a letter or underscore (at most 63 characters)'
    WHEN :'schema' !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$'
      THEN 'schema: use letters, digits and underscores, starting with a letter or underscore (at most 63 characters)'
    WHEN lower(:'role') LIKE 'pg\_%' OR lower(:'role') = 'public'
      THEN 'role: names starting with pg_ and the name public are reserved'
    WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :'schema')
      THEN 'schema does not exist in this database: materialize the warehouse first, or name its schema'
    WHEN :'role' = current_user
      THEN 'role is the warehouse user running this, which owns the tables: name a separate role'
    WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                 WHERE rolname = :'role' AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls))
      THEN 'role exists with SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS: name a separate role'
    WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.member
                 WHERE r.rolname = :'role')
      THEN 'role exists and is a member of other roles, whose privileges it would keep: name a separate role'
    WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                 WHERE n.nspname = :'schema' AND r.rolname = :'role')
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                 WHERE n.nspname = :'schema' AND r.rolname = :'role')
      THEN 'role owns the schema or objects in it: name a separate role'
  END AS problem
) AS checks
WHERE problem IS NOT NULL \gexec

SELECT format('CREATE ROLE %I LOGIN', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :'role') \gexec

-- privileges: begin
REVOKE ALL ON SCHEMA :"schema" FROM :"role";
REVOKE ALL ON ALL TABLES IN SCHEMA :"schema" FROM :"role";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA :"schema" FROM :"role";
ALTER DEFAULT PRIVILEGES IN SCHEMA :"schema" REVOKE ALL ON TABLES FROM :"role";
ALTER DEFAULT PRIVILEGES IN SCHEMA :"schema" REVOKE ALL ON SEQUENCES FROM :"role";
GRANT USAGE ON SCHEMA :"schema" TO :"role";
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"role";
ALTER DEFAULT PRIVILEGES IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"role";
-- privileges: end

COMMIT;
