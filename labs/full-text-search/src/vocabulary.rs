//! The words order descriptions are made of, most frequent first.
//!
//! Each slot of a description draws its entry by Zipf rank (see [`crate::orders`]): the first
//! entry of a list is the most common, the last the rarest, P(rank k) ≈ 1/k. So a handful of
//! words ("t-shirt", "black", "gift wrapped") are in a large share of the rows, and the tail
//! holds terms a few dozen rows in 200,000 mention (the last of 400 [`brands`]): the common
//! and the rare search terms.
//!
//! A few entries exist for the lesson: "cat" hides inside "certificate", "educational",
//! "location", "delicate", "duplicate", "vacation", "catalog" and "scatter" (an unanchored
//! `ILIKE '%cat%'` finds them all, full-text search only the cats); "running", "runs" and
//! "run" are one stem to the English dictionary; "size XL" and "XXL" make the two-letter
//! pattern. Typos are not in these lists: the seed drops or swaps letters in a few rows.

/// What was ordered. Two or three words each; the last entries are the rare terms.
pub const PRODUCTS: &[&str] = &[
    "t-shirt",
    "coffee mug",
    "phone case",
    "hoodie",
    "notebook",
    "water bottle",
    "wireless headphones",
    "tote bag",
    "charging cable",
    "running shoes",
    "socks",
    "desk lamp",
    "backpack",
    "scented candle",
    "yoga mat",
    "throw pillow",
    "sunglasses",
    "cat toy",
    "gift certificate",
    "picture frame",
    "bath towel",
    "cutting board",
    "wall clock",
    "dog leash",
    "educational puzzle",
    "rain jacket",
    "travel adapter",
    "bluetooth speaker",
    "kitchen scale",
    "plant pot",
    "bed sheets",
    "wool scarf",
    "laptop sleeve",
    "cat bed",
    "scatter cushion",
    "baby blanket",
    "board game",
    "umbrella",
    "wallet",
    "trail running vest",
    "watch strap",
    "pour-over kettle",
    "jigsaw puzzle",
    "bike light",
    "hiking boots",
    "cocktail shaker",
    "pillowcase",
    "tea infuser",
    "bookends",
    "cat tree",
    "garden gloves",
    "fountain pen",
    "salad bowl",
    "mouse pad",
    "ice cube tray",
    "dumbbells",
    "cheese knife",
    "hammock",
    "bird feeder",
    "chopping knife",
    "espresso tamper",
    "sourdough starter kit",
    "harmonica",
    "telescope",
];

/// Qualities (a third of the orders name one).
pub const QUALITIES: &[&str] = &[
    "organic",
    "vintage",
    "compact",
    "large",
    "small",
    "eco-friendly",
    "handmade",
    "premium",
    "lightweight",
    "waterproof",
    "foldable",
    "insulated",
    "ergonomic",
    "kids'",
    "travel",
    "personalised",
    "reusable",
];

/// What it is made of (a third of the orders say).
pub const MATERIALS: &[&str] = &[
    "cotton",
    "stainless steel",
    "ceramic",
    "bamboo",
    "leather",
    "wool",
    "recycled plastic",
    "glass",
    "linen",
    "silicone",
    "oak",
    "canvas",
    "merino",
];

/// Colours (six orders in ten name one).
pub const COLOURS: &[&str] = &[
    "black", "white", "navy", "grey", "red", "green", "beige", "blue", "pink", "yellow", "olive",
    "burgundy", "teal", "mustard",
];

/// Sizes, for the things people wear ([`APPAREL`]).
pub const SIZES: &[&str] = &[
    "size M", "size L", "size S", "size XL", "size XS", "size XXL",
];

/// Delivery and customer notes (half the orders carry one, some two).
pub const NOTES: &[&str] = &[
    "gift wrapped",
    "express shipping",
    "leave at the side door",
    "please deliver after 5 pm",
    "runs small, order a size up",
    "deliver to the location on the label",
    "delicate, handle with care",
    "ring the bell twice",
    "gift certificate enclosed",
    "no plastic packaging please",
    "replacement for a damaged item",
    "duplicate of an earlier order",
    "educational discount applied",
    "return label requested",
    "if we run out of stock, ship the rest",
    "vacation hold until the 20th",
    "catalog request included",
    "customer runs a small shop, invoice with VAT",
    "running late? leave it with the neighbour",
    "signature required",
    "birthday present, hide the invoice",
];

/// The products that take a size.
pub const APPAREL: &[&str] = &[
    "t-shirt",
    "hoodie",
    "socks",
    "running shoes",
    "rain jacket",
    "hiking boots",
    "trail running vest",
    "garden gloves",
];

/// 400 brand names, most frequent first: "Nordvik", "Nordini", … "Quinira", … built from
/// syllables (a fixed stride through the 20 × 20 combinations, so neighbours in rank do not
/// share a prefix). Brands are where the rare terms live.
pub fn brands() -> Vec<String> {
    const HEADS: [&str; 20] = [
        "Nord", "Alt", "Bel", "Cor", "Dal", "Ever", "Fen", "Gal", "Hal", "Ist", "Jor", "Kel",
        "Lum", "Mar", "Nov", "Ost", "Pal", "Quin", "Ros", "Sol",
    ];
    const TAILS: [&str; 20] = [
        "vik", "ora", "ano", "ex", "ia", "ton", "berg", "ini", "ova", "ard", "ello", "ix", "une",
        "ade", "orn", "ique", "ada", "esk", "ira", "um",
    ];
    (0..400)
        .map(|k| {
            let j = (k * 7) % 400;
            format!("{}{}", HEADS[j / 20], TAILS[j % 20])
        })
        .collect()
}
