package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// PostgresFromEnv is the server of Argo's workflow archive as DWP_PG_HOST, DWP_PG_USER
// and DWP_PG_PASSWORD name it (127.0.0.1, postgres and postgres when unset; port 5432),
// with database.
func PostgresFromEnv(database string) Postgres {
	env := func(key, def string) string {
		if v := os.Getenv(key); v != "" {
			return v
		}
		return def
	}
	return Postgres{
		Host: env("DWP_PG_HOST", "127.0.0.1"), Port: 5432,
		User: env("DWP_PG_USER", "postgres"), Password: env("DWP_PG_PASSWORD", "postgres"),
		Database: database,
	}
}

func (p Postgres) dsn(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(p.User, p.Password),
		Host:     net.JoinHostPort(p.Host, strconv.Itoa(p.Port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// ensureDatabase creates the archive database when it does not exist.
func ensureDatabase(ctx context.Context, p Postgres) error {
	conn, err := pgx.Connect(ctx, p.dsn("postgres"))
	if err != nil {
		return fmt.Errorf("postgres at %s:%d is not answering (start it with `make services`): %w", p.Host, p.Port, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", p.Database).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", p.Database, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{p.Database}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", p.Database, err)
	}
	return nil
}

func dropDatabase(ctx context.Context, p Postgres) error {
	conn, err := pgx.Connect(ctx, p.dsn("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{p.Database}.Sanitize()+" WITH (FORCE)")
	return err
}
