//! The binary-size cost of redb: open, one write, one read, one scan.
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
const T: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
fn main() {
    let db = redb::Database::create(std::env::temp_dir().join("size.redb")).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(T).unwrap().insert("k", b"v".as_slice()).unwrap();
    tx.commit().unwrap();
    let tx = db.begin_read().unwrap();
    let t = tx.open_table(T).unwrap();
    println!("{:?} {}", t.get("k").unwrap().map(|v| v.value().to_vec()), t.iter().unwrap().count());
}
