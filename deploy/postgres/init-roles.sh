#!/bin/sh
# First start of the docker-compose Postgres: the three Tally roles, the tally
# database owned by the owner role, and TLS-only access for everyone over TCP.
# The same roles and rules `tally up` provisions (src/security/postgres-roles.ts):
#   tally_owner    runs the migrations, owns the schema
#   tally_settler  INSERT/SELECT on the history, UPDATE only on settled_accounts (granted by the owner at start)
#   tally_reader   SELECT only
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE tally_owner   LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD '$TALLY_PG_OWNER_PASSWORD';
CREATE ROLE tally_settler LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD '$TALLY_PG_SETTLER_PASSWORD';
CREATE ROLE tally_reader  LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD '$TALLY_PG_READER_PASSWORD';
CREATE DATABASE tally OWNER tally_owner;
REVOKE ALL ON DATABASE tally FROM PUBLIC;
GRANT CONNECT ON DATABASE tally TO tally_owner, tally_settler, tally_reader;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname tally <<SQL
ALTER SCHEMA public OWNER TO tally_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO tally_settler, tally_reader;
SQL
# TCP only over TLS with a password; the superuser only through the socket.
{
  echo "local     all all trust"
  echo "hostssl   all tally_owner,tally_settler,tally_reader all scram-sha-256"
  echo "host      all all all reject"
} > "$PGDATA/pg_hba.conf"
