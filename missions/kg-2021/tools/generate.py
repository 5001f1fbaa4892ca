#!/usr/bin/env python3
"""Generate the synthetic rosters of the kg-2021 sample mission.

Writes ``stations.csv`` and ``observers.csv`` into the mission directory (the
parent of this ``tools/`` directory). Python 3 standard library only. The
output is deterministic: a fixed random seed, a fixed row order and ``\\n``
line endings, so running the script again reproduces byte-identical files.

Official figures built in (CEC of the Kyrgyz Republic, see ../README.md):
  * polling stations per region (2,476 in all, 48 of them abroad);
  * 3,563,574 voters on the lists in total;
  * 35,575 voters on the lists abroad;
  * 726,311 voters on the lists in Osh region.
Everything else -- the other regional voter totals, every per-station voter
count, station names and coordinates, and all observers -- is synthetic.

It also writes the rosters of ``../kg-2021-pvt``, the citizen network's quick
count at the same election: the same ``stations.csv``, and an ``observers.csv``
of PVT_OBSERVERS citizen observers, each a team of one (one can be posted to
every station). Their names come from a random generator of their own, so the
kg-2021 files do not change with them.

Usage:  python3 missions/kg-2021/tools/generate.py
"""

import csv
import math
import os
import random

SEED = 20210110

MISSION_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOTAL_VOTERS = 3_563_574  # official
ABROAD_VOTERS = 35_575  # official
OSH_REGION_VOTERS = 726_311  # official

# (number, code, display name, stations [official], voters, (lat, lon) centre,
#  (lat_min, lat_max, lon_min, lon_max) box, (min, max) station size,
#  spread of station sizes -- see distribute())
# Voters are official for osh and abroad; the other regional totals are
# synthetic and chosen so that the grand total equals TOTAL_VOTERS.
REGIONS = [
    (1, "bishkek", "Bishkek city", 228, 486_530,
     (42.8746, 74.5698), (42.8000, 42.9400, 74.4500, 74.6900), (700, 3000), 6.0),
    (2, "osh_city", "Osh city", 80, 156_214,
     (40.5283, 72.7985), (40.4900, 40.5700, 72.7400, 72.8600), (600, 3000), 5.0),
    (3, "osh", "Osh region", 512, OSH_REGION_VOTERS,
     (40.2000, 73.2000), (39.5000, 40.8500, 72.3500, 74.3000), (50, 3000), 3.5),
    (4, "chui", "Chui region", 406, 574_862,
     (42.7800, 74.6000), (42.5000, 43.0500, 73.2000, 76.0000), (50, 3000), 3.5),
    (5, "jalal_abad", "Jalal-Abad region", 449, 669_375,
     (41.2000, 72.7000), (40.8000, 41.9000, 70.9000, 73.6000), (50, 3000), 3.5),
    (6, "issyk_kul", "Issyk-Kul region", 248, 307_948,
     (42.4000, 77.6000), (41.9500, 42.8000, 76.1000, 79.0000), (50, 3000), 3.5),
    (7, "naryn", "Naryn region", 171, 178_219,
     (41.4300, 75.9900), (40.9000, 42.0000, 73.9000, 77.2000), (50, 3000), 3.0),
    (8, "batken", "Batken region", 217, 279_463,
     (40.0600, 70.8200), (39.6500, 40.3000, 69.5000, 72.2000), (50, 3000), 3.5),
    (9, "talas", "Talas region", 117, 149_077,
     (42.5200, 72.2400), (42.2500, 42.6500, 71.0000, 73.0000), (50, 3000), 3.5),
]
ABROAD_NUMBER = 10
ABROAD_CODE = "abroad"
ABROAD_STATIONS = 48  # official

# Abroad polling stations: (city, country, lat, lon, relative size).
# 15 in Russia, the rest spread over the main destinations of Kyrgyz migrants
# and over capitals with a Kyrgyz embassy or consulate. Synthetic.
ABROAD = [
    ("Moscow", "Russia", 55.7558, 37.6173, 4.0),
    ("Moscow", "Russia", 55.7558, 37.6173, 4.0),
    ("Moscow", "Russia", 55.7558, 37.6173, 3.5),
    ("Moscow", "Russia", 55.7558, 37.6173, 3.5),
    ("Saint Petersburg", "Russia", 59.9343, 30.3351, 3.5),
    ("Saint Petersburg", "Russia", 59.9343, 30.3351, 3.0),
    ("Yekaterinburg", "Russia", 56.8389, 60.6057, 2.5),
    ("Novosibirsk", "Russia", 55.0084, 82.9357, 2.5),
    ("Krasnoyarsk", "Russia", 56.0153, 92.8932, 2.0),
    ("Irkutsk", "Russia", 52.2870, 104.3050, 1.8),
    ("Kazan", "Russia", 55.7963, 49.1088, 1.8),
    ("Samara", "Russia", 53.1959, 50.1002, 1.5),
    ("Tyumen", "Russia", 57.1530, 65.5343, 1.5),
    ("Surgut", "Russia", 61.2540, 73.3962, 1.5),
    ("Yakutsk", "Russia", 62.0355, 129.6755, 1.5),
    ("Almaty", "Kazakhstan", 43.2220, 76.8512, 2.5),
    ("Almaty", "Kazakhstan", 43.2220, 76.8512, 2.0),
    ("Nur-Sultan", "Kazakhstan", 51.1694, 71.4491, 1.5),
    ("Shymkent", "Kazakhstan", 42.3417, 69.5901, 0.8),
    ("Taraz", "Kazakhstan", 42.9000, 71.3667, 0.6),
    ("Istanbul", "Turkey", 41.0082, 28.9784, 2.0),
    ("Istanbul", "Turkey", 41.0082, 28.9784, 1.5),
    ("Ankara", "Turkey", 39.9334, 32.8597, 0.8),
    ("Washington", "USA", 38.9072, -77.0369, 0.5),
    ("New York", "USA", 40.7128, -74.0060, 0.8),
    ("Chicago", "USA", 41.8781, -87.6298, 0.6),
    ("Dubai", "UAE", 25.2048, 55.2708, 0.8),
    ("Abu Dhabi", "UAE", 24.4539, 54.3773, 0.4),
    ("Berlin", "Germany", 52.5200, 13.4050, 0.5),
    ("Frankfurt am Main", "Germany", 50.1109, 8.6821, 0.4),
    ("London", "UK", 51.5074, -0.1278, 0.5),
    ("Seoul", "South Korea", 37.5665, 126.9780, 1.2),
    ("Ansan", "South Korea", 37.3219, 126.8309, 0.8),
    ("Tashkent", "Uzbekistan", 41.2995, 69.2401, 0.4),
    ("Dushanbe", "Tajikistan", 38.5598, 68.7870, 0.25),
    ("Beijing", "China", 39.9042, 116.4074, 0.3),
    ("Urumqi", "China", 43.8256, 87.6168, 0.25),
    ("Tokyo", "Japan", 35.6762, 139.6503, 0.3),
    ("Minsk", "Belarus", 53.9006, 27.5590, 0.25),
    ("Kyiv", "Ukraine", 50.4501, 30.5234, 0.25),
    ("Baku", "Azerbaijan", 40.4093, 49.8671, 0.2),
    ("Vienna", "Austria", 48.2082, 16.3738, 0.2),
    ("Paris", "France", 48.8566, 2.3522, 0.25),
    ("Rome", "Italy", 41.9028, 12.4964, 0.3),
    ("Brussels", "Belgium", 50.8503, 4.3517, 0.2),
    ("Kuala Lumpur", "Malaysia", 3.1390, 101.6869, 0.2),
    ("Riyadh", "Saudi Arabia", 24.7136, 46.6753, 0.2),
    ("Ottawa", "Canada", 45.4215, -75.6972, 0.2),
]

# Observer names: synthetic combinations of common given names and surnames,
# grouped by nationality. Not meant to designate any real person.
NAME_POOLS = [
    (["Anna", "Erik", "Ingrid", "Lars", "Sofia", "Johan", "Maja", "Karl"],
     ["Lindqvist", "Berglund", "Holmberg", "Sandström", "Nyberg", "Ekdahl"]),  # Swedish
    (["Katharina", "Jonas", "Lena", "Tobias", "Miriam", "Florian", "Sabine", "Matthias"],
     ["Hoffmann", "Krüger", "Brandt", "Lehmann", "Vogel", "Seidel"]),  # German
    (["Claire", "Julien", "Amélie", "Mathieu", "Camille", "Olivier", "Élise", "Thomas"],
     ["Lefebvre", "Moreau", "Garnier", "Rousseau", "Chevalier", "Fontaine"]),  # French
    (["Emily", "James", "Hannah", "Oliver", "Charlotte", "George", "Lucy", "Daniel"],
     ["Whitfield", "Harrington", "Caldwell", "Pemberton", "Ashworth", "Fairley"]),  # British
    (["Sarah", "Michael", "Jennifer", "Brian", "Megan", "Kevin", "Rachel", "Eric"],
     ["Donovan", "Whitaker", "Hendricks", "Calloway", "Brennan", "Stafford"]),  # American
    (["Giulia", "Marco", "Chiara", "Luca", "Francesca", "Davide", "Elena", "Stefano"],
     ["Ferraro", "Colombo", "Marchetti", "Bellini", "Rinaldi", "Galli"]),  # Italian
    (["Agnieszka", "Piotr", "Magdalena", "Tomasz", "Katarzyna", "Paweł", "Joanna", "Marcin"],
     ["Kowalczyk", "Nowak", "Mazur", "Krawczyk", "Wójcik", "Kaczmarek"]),  # Polish
    (["Mari", "Kristjan", "Liis", "Andres", "Kadri", "Tõnu"],
     ["Tamm", "Saar", "Kask", "Mägi", "Rebane", "Lepp"]),  # Estonian
    (["Laura", "Jukka", "Aino", "Mikko", "Riikka", "Antti"],
     ["Virtanen", "Mäkelä", "Heikkinen", "Koskinen", "Laaksonen", "Salminen"]),  # Finnish
    (["Sanne", "Pieter", "Femke", "Joost", "Marloes", "Ruud"],
     ["de Vries", "van Dijk", "Bakker", "Visser", "Smits", "Mulder"]),  # Dutch
    (["Ioana", "Andrei", "Elena", "Mihai", "Raluca", "Bogdan"],
     ["Popescu", "Ionescu", "Dumitrescu", "Stoica", "Georgescu", "Marin"]),  # Romanian
    (["Nino", "Giorgi", "Tamar", "Levan", "Ana", "Davit"],
     ["Beridze", "Kapanadze", "Gelashvili", "Lomidze", "Tsiklauri", "Mchedlidze"]),  # Georgian
    (["Ayşe", "Mehmet", "Elif", "Emre", "Zeynep", "Burak"],
     ["Yılmaz", "Demir", "Aydın", "Arslan", "Koç", "Kurt"]),  # Turkish
    (["Marta", "Javier", "Lucía", "Álvaro", "Carmen", "Pablo"],
     ["García Ruiz", "Navarro", "Molina", "Ortega", "Castillo", "Herrero"]),  # Spanish
    (["Ingeborg", "Håkon", "Silje", "Eirik", "Kari", "Øyvind"],
     ["Haugen", "Bakken", "Dahl", "Berg", "Lunde", "Strand"]),  # Norwegian
    (["Akiko", "Hiroshi", "Yuki", "Kenji", "Naomi", "Takeshi"],
     ["Tanaka", "Watanabe", "Kobayashi", "Yamamoto", "Nakamura", "Inoue"]),  # Japanese
    (["Siobhán", "Ciarán", "Aoife", "Declan", "Niamh", "Cormac"],
     ["Byrne", "Gallagher", "Kavanagh", "Doyle", "Walsh", "Brennan"]),  # Irish
    (["Jakub", "Ondřej", "Martin", "Tomáš", "Lukáš", "Vojtěch"],
     ["Dvořák", "Novák", "Horák", "Svoboda", "Kratochvíl", "Pokorný"]),  # Czech (male given names to match the surnames)
    (["Mette", "Rasmus", "Louise", "Mads", "Signe", "Anders"],
     ["Kjær", "Jørgensen", "Thomsen", "Kristensen", "Møller", "Lund"]),  # Danish
    (["Isabel", "Tiago", "Inês", "Rui", "Beatriz", "Nuno"],
     ["Ferreira", "Carvalho", "Pereira", "Sousa", "Almeida", "Lopes"]),  # Portuguese
]

# Citizen observers' names: synthetic combinations of common Kyrgyz given
# names and surnames (the surname in its masculine or feminine form).
KYRGYZ_GIVEN = [
    ("Aibek", "m"), ("Nurlan", "m"), ("Azamat", "m"), ("Bakyt", "m"), ("Ermek", "m"),
    ("Talant", "m"), ("Kubanychbek", "m"), ("Ulan", "m"), ("Daniyar", "m"), ("Marat", "m"),
    ("Temirlan", "m"), ("Chyngyz", "m"), ("Almaz", "m"), ("Bolot", "m"), ("Erlan", "m"),
    ("Aigul", "f"), ("Nurzhan", "f"), ("Aizhan", "f"), ("Gulnara", "f"), ("Cholpon", "f"),
    ("Asel", "f"), ("Begimai", "f"), ("Kanykei", "f"), ("Aida", "f"), ("Zhyldyz", "f"),
    ("Elnura", "f"), ("Meerim", "f"), ("Saltanat", "f"), ("Nazira", "f"), ("Aiperi", "f"),
]
KYRGYZ_FAMILY = [
    "Abdyldaev", "Asanov", "Bekmuratov", "Dzhumabaev", "Esenaliev", "Isakov",
    "Kadyrov", "Mamytov", "Nurmatov", "Omurzakov", "Sadykov", "Toktogulov",
    "Usenov", "Zhumaliev", "Kasymov", "Osmonov", "Sultanbekov", "Tashiev",
    "Aitmatov", "Beishenaliev", "Duishenbiev", "Karabaev", "Musaev", "Orozbekov",
]
PVT_SEED = SEED + 1
PVT_OBSERVERS = 2_476
PVT_DIR = os.path.join(os.path.dirname(MISSION_DIR), "kg-2021-pvt")

STATION_HEADER = ["code", "name", "region", "district", "registered_voters", "lat", "lon", "abroad"]
OBSERVER_HEADER = ["id", "name", "team", "device_user"]
OBSERVERS = 200
TEAM_SIZE = 2


def distribute(rng, n, total, lo, hi, spread, weights=None):
    """Return n integers in [lo, hi], varied, summing exactly to total.

    Without weights, sizes are drawn from a beta distribution on [lo, hi]
    whose mean is total / n (``spread`` is its concentration a + b: the
    smaller, the more varied). With weights, sizes are proportional to the
    weights times a log-normal noise of sigma ``spread``.
    """
    assert n * lo <= total <= n * hi, (n, total, lo, hi)
    if weights is None:
        p = (total / n - lo) / (hi - lo)
        a, b = p * spread, (1.0 - p) * spread
        raw = [lo + (hi - lo) * rng.betavariate(a, b) for _ in range(n)]
    else:
        raw = [w * math.exp(rng.gauss(0.0, spread)) for w in weights]
    # Scale to the total, clamp to [lo, hi], and rescale the unclamped
    # stations until the clamped values sum to the total.
    values = [v * total / sum(raw) for v in raw]
    for _ in range(100):
        values = [min(hi, max(lo, v)) for v in values]
        free = [i for i, v in enumerate(values) if lo < v < hi]
        fixed_sum = sum(v for i, v in enumerate(values) if not (lo < v < hi))
        free_sum = sum(values[i] for i in free)
        if not free or abs(fixed_sum + free_sum - total) < 0.5:
            break
        factor = (total - fixed_sum) / free_sum
        for i in free:
            values[i] *= factor
    ints = [min(hi, max(lo, int(round(v)))) for v in values]
    # Fix the rounding residue one voter at a time on randomly chosen stations.
    diff = total - sum(ints)
    step = 1 if diff > 0 else -1
    while diff != 0:
        i = rng.randrange(n)
        if lo <= ints[i] + step <= hi:
            ints[i] += step
            diff -= step
    assert sum(ints) == total and all(lo <= v <= hi for v in ints)
    return ints


def coordinate(rng, centre, box):
    lat_c, lon_c = centre
    lat_min, lat_max, lon_min, lon_max = box
    while True:
        lat = rng.gauss(lat_c, (lat_max - lat_min) / 4.0)
        lon = rng.gauss(lon_c, (lon_max - lon_min) / 4.0)
        if lat_min <= lat <= lat_max and lon_min <= lon <= lon_max:
            return lat, lon


def station_rows(rng):
    regional = sum(r[4] for r in REGIONS) + ABROAD_VOTERS
    assert regional == TOTAL_VOTERS, regional
    assert len(ABROAD) == ABROAD_STATIONS
    rows = []
    for number, code, name, count, voters, centre, box, (lo, hi), spread in REGIONS:
        sizes = distribute(rng, count, voters, lo, hi, spread)
        for seq in range(1, count + 1):
            st_code = f"{number:02d}{seq:03d}"
            lat, lon = coordinate(rng, centre, box)
            rows.append([st_code, f"PEC {st_code}, {name}", code, "",
                         str(sizes[seq - 1]), f"{lat:.4f}", f"{lon:.4f}", "false"])
    weights = [a[4] for a in ABROAD]
    sizes = distribute(rng, ABROAD_STATIONS, ABROAD_VOTERS, 50, 3000, 0.15, weights)
    for seq, (city, country, lat_c, lon_c, _w) in enumerate(ABROAD, start=1):
        st_code = f"{ABROAD_NUMBER:02d}{seq:03d}"
        # A few hundred metres around the city centre, so that several
        # stations in one city do not share a point.
        lat = lat_c + rng.uniform(-0.02, 0.02)
        lon = lon_c + rng.uniform(-0.03, 0.03)
        rows.append([st_code, f"PEC {st_code}, {city} ({country})", ABROAD_CODE, "",
                     str(sizes[seq - 1]), f"{lat:.4f}", f"{lon:.4f}", "true"])
    return rows


def observer_rows(rng):
    seen = set()
    names = []
    while len(names) < OBSERVERS:
        given, family = NAME_POOLS[rng.randrange(len(NAME_POOLS))]
        full = f"{rng.choice(given)} {rng.choice(family)}"
        if full not in seen:
            seen.add(full)
            names.append(full)
    rows = []
    for i, full in enumerate(names, start=1):
        team = (i - 1) // TEAM_SIZE + 1
        rows.append([f"obs-{i:03d}", full, f"team-{team:03d}", f"dev-obs-{i:03d}"])
    return rows


def citizen_observer_rows(rng):
    seen = set()
    names = []
    while len(names) < PVT_OBSERVERS:
        given, sex = rng.choice(KYRGYZ_GIVEN)
        family = rng.choice(KYRGYZ_FAMILY)
        full = f"{given} {rng.choice('ABDEKMNOST')}. {family}{'a' if sex == 'f' else ''}"
        if full not in seen:
            seen.add(full)
            names.append(full)
    return [[f"cit-{i:04d}", full, f"cit-{i:04d}", f"dev-cit-{i:04d}"]
            for i, full in enumerate(names, start=1)]


def write_csv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(header)
        w.writerows(rows)


def main():
    rng = random.Random(SEED)
    stations = station_rows(rng)
    observers = observer_rows(rng)
    write_csv(os.path.join(MISSION_DIR, "stations.csv"), STATION_HEADER, stations)
    write_csv(os.path.join(MISSION_DIR, "observers.csv"), OBSERVER_HEADER, observers)
    print(f"wrote {len(stations)} stations and {len(observers)} observers to {MISSION_DIR}")
    citizens = citizen_observer_rows(random.Random(PVT_SEED))
    write_csv(os.path.join(PVT_DIR, "stations.csv"), STATION_HEADER, stations)
    write_csv(os.path.join(PVT_DIR, "observers.csv"), OBSERVER_HEADER, citizens)
    print(f"wrote {len(stations)} stations and {len(citizens)} observers to {PVT_DIR}")


if __name__ == "__main__":
    main()
