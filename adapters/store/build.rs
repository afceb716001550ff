// `sqlx::migrate!` embeds the migration files when this crate is compiled; without this,
// a new migration file would not make cargo rebuild it.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
