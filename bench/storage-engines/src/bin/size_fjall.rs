//! The binary-size cost of fjall: open, one write, one read, one scan.
fn main() {
    let db = fjall::Database::builder(std::env::temp_dir().join("size-fjall")).open().unwrap();
    let ks = db.keyspace("kv", fjall::KeyspaceCreateOptions::default).unwrap();
    let mut b = db.batch().durability(Some(fjall::PersistMode::SyncData));
    b.insert(&ks, "k", "v");
    b.commit().unwrap();
    println!("{:?} {}", ks.get("k").unwrap(), ks.iter().count());
}
