-- One row, made with the schema: a random id that tells this database's messages apart
-- from another database's on a shared NATS stream (message ids are `<store_id>:<position>`).
CREATE TABLE IF NOT EXISTS store_identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    store_id TEXT NOT NULL
);
INSERT INTO store_identity (id, store_id)
SELECT 1, lower(hex(randomblob(16)))
 WHERE NOT EXISTS (SELECT 1 FROM store_identity);
