-- application_id 1195724361, user_version 2
CREATE TABLE feature_flags (
  plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (plan_id, name)
);
CREATE TABLE fragments (
  plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  modules TEXT NOT NULL,
  runtime INTEGER NOT NULL,
  address TEXT NOT NULL,
  device TEXT NOT NULL,
  flops REAL NOT NULL,
  parameter_bytes INTEGER NOT NULL,
  PRIMARY KEY (plan_id, idx)
);
CREATE TABLE plan_fingerprints (
  plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  fingerprint INTEGER NOT NULL,
  PRIMARY KEY (plan_id, fingerprint)
);
CREATE TABLE plans (
  id TEXT PRIMARY KEY,
  trace_key TEXT NOT NULL,
  pool TEXT NOT NULL,
  class TEXT NOT NULL,
  class_overridden INTEGER NOT NULL,
  confidence REAL NOT NULL,
  training INTEGER NOT NULL,
  strategy TEXT NOT NULL,
  trace_path TEXT NOT NULL,
  created TEXT NOT NULL, last_used TEXT NOT NULL DEFAULT '', uses INTEGER NOT NULL DEFAULT 0,
  UNIQUE (trace_key, pool)
);
CREATE TABLE residency (
  plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  kind TEXT NOT NULL,
  what TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  fragment INTEGER NOT NULL,
  PRIMARY KEY (plan_id, idx)
);
CREATE TABLE trace_index (
  path TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  trace_key TEXT NOT NULL
);
CREATE TABLE transfers (
  plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  phase TEXT NOT NULL,
  direction TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  tensors INTEGER NOT NULL,
  fragment INTEGER NOT NULL,
  PRIMARY KEY (plan_id, idx)
);
