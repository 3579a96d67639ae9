package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5"
)

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
