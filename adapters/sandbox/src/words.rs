//! Word lists and the seed clock shared by every simulator's deterministic seeding,
//! so seeded names, emails and companies look alike across providers.

/// 2024-01-01T00:00:00Z: seeded modification times start here.
pub const EPOCH_MS: i64 = 1_704_067_200_000;
/// Time between consecutive groups of records that share one modification time.
pub const GROUP_STEP_MS: i64 = 60_000;

pub const FIRST: &[&str] = &[
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Amelia",
    "Oliver",
    "Sophia",
    "Elijah",
    "Charlotte",
    "James",
    "Ava",
    "Lucas",
    "Mia",
    "Mateo",
    "Isabella",
    "Hiroshi",
    "Priya",
    "Chen",
    "Fatima",
    "Kwame",
    "Ingrid",
    "Luca",
    "Zoe",
    "Omar",
    "Anika",
    "Diego",
    "Sofia",
    "Aarav",
    "Nora",
    "Felix",
];

pub const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Nakamura",
    "Patel",
    "Wang",
    "Okafor",
    "Schmidt",
    "Rossi",
    "Novak",
    "Kowalski",
    "Haddad",
    "Larsen",
    "Fernandes",
];

pub const MAIL: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "proton.me",
    "fastmail.com",
];

pub const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "Sales Manager",
    "Account Executive",
    "Engineer",
    "Marketing Lead",
    "Buyer",
];

pub const CITIES: &[&str] = &[
    "Boston",
    "Berlin",
    "Austin",
    "Dublin",
    "Toronto",
    "Lisbon",
    "Singapore",
    "Denver",
];

pub const WORDS: &[&str] = &[
    "Blue",
    "Summit",
    "Northwind",
    "Apex",
    "Cedar",
    "Harbor",
    "Quantum",
    "Silver",
    "Bright",
    "Iron",
    "Maple",
    "Nimbus",
    "Pioneer",
    "Granite",
    "Lumen",
    "Vertex",
];

pub const NOUNS: &[&str] = &[
    "Labs",
    "Systems",
    "Logistics",
    "Foods",
    "Health",
    "Analytics",
    "Works",
    "Partners",
    "Robotics",
    "Media",
];

pub const SUFFIX: &[&str] = &["Inc", "LLC", "GmbH", "Ltd", "Co"];

pub const INDUSTRIES: &[&str] = &[
    "COMPUTER_SOFTWARE",
    "RETAIL",
    "HOSPITAL_HEALTH_CARE",
    "LOGISTICS_AND_SUPPLY_CHAIN",
    "FOOD_BEVERAGES",
];
