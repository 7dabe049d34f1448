"""Writes corpus.jsonl, queries.jsonl (the labelled test set) and train_queries.jsonl (for the re-ranker).

The corpus is an invented home-appliance help centre (every product, code and fact is made up), built so that
the two retrievers have different strengths:
  * error-code and model-number questions ("Fjord W7 code E-417") are won by exact term match (BM25);
  * how-to questions phrased in other words than the answer ("my clothes come out wrinkled") are won by
    embeddings, because the answer shares almost no word with the question.
Run `python data/make_data.py` to regenerate (deterministic); the committed files are its output.
"""
import json
import os
import random
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
rng = random.Random(7)

DEVICES = {  # device -> the noun a user would use
    "Aurel D5 dishwasher": "dishwasher", "Brisk K2 kettle": "kettle", "Cinder O9 oven": "oven",
    "Drift V3 robot vacuum": "vacuum", "Ember H4 heat pump": "heat pump", "Fjord W7 washing machine": "washer",
}
FAULTS = [  # (what the display means, what to do)
    ("the water inlet took too long to fill", "open the tap fully and clean the inlet filter"),
    ("the drain pump is blocked", "remove the pump cover and take out any debris"),
    ("the door latch did not close", "press the door firmly until it clicks, then restart the cycle"),
    ("the temperature sensor reads out of range", "unplug the unit for ten minutes; if it returns, book a repair"),
    ("the motor is overloaded", "reduce the load and let the unit cool for thirty minutes"),
    ("the mains voltage dipped during the program", "plug the unit straight into a wall socket, not an extension"),
    ("the heating element failed its self-test", "the element must be replaced by a technician"),
    ("the control board lost its settings", "hold the power button for five seconds to restore factory settings"),
    ("a leak was detected in the base tray", "switch off the supply, dry the base and check the hoses"),
    ("the fan is not spinning", "clear dust from the fan grille and restart"),
    ("the battery is too cold to charge", "move the unit to a room above ten degrees"),
    ("the Wi-Fi module cannot reach the router", "restart the router and re-pair the app"),
]


def error_docs():
    """Ten codes per device, drawn from one small pool of look-alike codes (E-114, E-141, E-411, ...), so the same
    code means different things on different devices and neighbouring codes differ by one swapped digit: exact
    matching of the code token matters, which is where BM25 beats an embedding."""
    pool = sorted({f"E-{a}{b}{c}" for a in "1478" for b in "1478" for c in "14"})
    docs = []
    for device in DEVICES:
        for code, (meaning, action) in zip(rng.sample(pool, 10), rng.sample(FAULTS, 10)):
            docs.append({"id": f"err-{len(docs):03d}", "title": f"{device}: code {code}",
                         "text": f"Code {code} on the {device} means {meaning}. To clear it, {action}.",
                         "device": device, "code": code})
    return docs


SPECS = [  # (model, category, fact sentences)
    ("Larkspur 300", "projector", "It is rated at 3,000 lumens and weighs 2.4 kg."),
    ("Larkspur 500", "projector", "It is rated at 5,200 lumens and has a laser light source lasting 20,000 hours."),
    ("Quill Q1", "e-reader", "Its screen is 6 inches and the battery lasts about five weeks of reading."),
    ("Quill Q3", "e-reader", "Its screen is 7.8 inches, it is waterproof to IPX8, and it supports a stylus."),
    ("Tamber S2", "soundbar", "It outputs 180 watts through five drivers and connects over HDMI eARC."),
    ("Tamber S6", "soundbar", "It outputs 450 watts, includes a wireless subwoofer and supports Dolby Atmos."),
    ("Orrin R8", "router", "It is a tri-band Wi-Fi 7 router with four 2.5-gigabit Ethernet ports."),
    ("Orrin R2", "router", "It is a dual-band Wi-Fi 6 router meant for flats under 80 square metres."),
    ("Pellin P4", "air purifier", "It has a HEPA-13 filter and cleans a 40 square metre room five times an hour."),
    ("Pellin P9", "air purifier", "It has a HEPA-14 filter, a carbon layer for odours and runs at 22 dB on night mode."),
    ("Sorrel B1", "bread maker", "It bakes a 1 kg loaf in three hours and has a gluten-free program."),
    ("Sorrel B5", "bread maker", "It bakes up to 1.5 kg, has a fruit-and-nut dispenser and a 15-hour delay timer."),
    ("Wren C2", "coffee grinder", "It has 40 grind settings and conical steel burrs."),
    ("Wren C7", "coffee grinder", "It has stepless adjustment, flat ceramic burrs and weighs the dose to 0.1 g."),
    ("Halden T3", "smart thermostat", "It learns a weekly schedule and works with two-wire heating systems."),
    ("Halden T8", "smart thermostat", "It controls up to eight radiator valves and reports energy use per room."),
    ("Mossel M2", "electric toothbrush", "It makes 31,000 strokes a minute and its charge lasts three weeks."),
    ("Mossel M6", "electric toothbrush", "It has a pressure sensor that flashes red when you brush too hard."),
    ("Vesper L1", "desk lamp", "It gives 800 lumens with a colour temperature from 2,700 to 6,500 kelvin."),
    ("Vesper L4", "desk lamp", "It has a wireless phone charger in the base and an ambient light sensor."),
    ("Keel F2", "fitness tracker", "It tracks heart rate and sleep and is water resistant to 50 metres."),
    ("Keel F5", "fitness tracker", "It adds built-in GPS, blood oxygen readings and a 12-day battery."),
    ("Brisk K2", "kettle", "It holds 1.7 litres and has five temperature presets from 70 to 100 degrees."),
    ("Aurel D5", "dishwasher", "It takes 14 place settings and uses 9.5 litres of water on the eco program."),
    ("Cinder O9", "oven", "It has a 71 litre cavity, a steam mode and pyrolytic self-cleaning."),
    ("Drift V3", "robot vacuum", "It maps the home with lidar and empties itself into a 3 litre base bag."),
    ("Ember H4", "heat pump", "It has a seasonal efficiency of 4.6 and heats homes up to 160 square metres."),
    ("Fjord W7", "washing machine", "It takes 9 kg loads, spins at 1,400 rpm and has a 15-minute quick wash."),
]


def spec_docs():
    return [{"id": f"spec-{i:03d}", "title": f"{model} {category}",
             "text": f"The {model} is a {category}. {facts}", "model": model}
            for i, (model, category, facts) in enumerate(SPECS)]


# How-to articles. Test questions share a word or two with their answer, as real questions do; training
# questions are full paraphrases.
HOWTO = [
    ("Removing creases after a wash", "Take garments out as soon as the drum stops and choose the easy-iron program; a slower spin of 800 rpm leaves fabrics smoother.", "how do I stop creases in my clothes after washing", "test"),
    ("Descaling a kettle", "Fill the kettle halfway with equal parts white vinegar and water, boil, leave for an hour, then rinse three times.", "white crust building up inside my kettle", "test"),
    ("Getting rid of oven smells", "Run the pyrolytic cycle with the racks removed; it burns residue to ash that you wipe away once cool.", "burnt food smell every time I use the oven", "test"),
    ("Stopping a robot vacuum from getting stuck", "Set no-go zones in the app around cables and low furniture, and lift tassels on rugs off the floor.", "robot vacuum keeps getting trapped under the sofa", "test"),
    ("Lowering your heating bill with a heat pump", "Keep a steady setpoint instead of large night setbacks, and lower the flow temperature to 35 to 45 degrees.", "how can I lower my heating bill", "test"),
    ("Spotty glasses after the dishwasher", "Top up the rinse aid and raise its dosage one step; hard water also needs the softener salt refilled.", "glasses have white spots after the dishwasher", "test"),
    ("Cleaning a washing machine drum", "Once a month run an empty 90 degree cycle with a cup of soda crystals to clear detergent build-up and mould.", "the washing machine smells musty inside", "test"),
    ("Pairing a device with the home app", "Hold the Wi-Fi button for three seconds until the light blinks blue, then follow the steps under Add device.", "how to connect my appliance to the home app on my phone", "test"),
    ("Making a quieter bedroom purifier", "Switch the purifier to night mode, which caps the fan speed and dims the display after ten minutes.", "the air purifier is too loud while I sleep", "test"),
    ("Fixing a loaf that collapses", "Reduce the yeast by a quarter teaspoon and check that the water is not warmer than 30 degrees.", "my homemade loaf sinks in the middle", "test"),
    ("Extending tracker battery life", "Turn off always-on display and continuous blood oxygen, and sync once a day instead of constantly.", "my fitness tracker battery runs flat too quickly", "test"),
    ("Reducing glare from a desk light", "Angle the head away from the screen and choose a warmer colour temperature in the evening.", "the desk lamp hurts my eyes when I work at night", "test"),
    ("Getting a finer coffee grind", "Turn the collar towards the smaller numbers one click at a time, grinding a little between each click.", "espresso runs watery, I need a finer grind", "test"),
    ("Moving an appliance safely", "Run a drain cycle, fit the transit bolts back in the rear panel and keep the machine upright in the van.", "we are moving house, how do I transport the washing machine", "test"),
    ("Brushing without hurting your gums", "Let the head rest lightly; if the ring turns red you are pressing too hard, so ease off.", "my gums bleed when I use the toothbrush", "test"),
    ("Sharper projector image", "Turn the focus ring while showing the grid test pattern and keep the lens square to the wall to avoid keystone blur.", "the projector picture on the wall looks fuzzy", "test"),
    ("Better dialogue from a soundbar", "Enable voice enhancement, which lifts the centre channel so speech stands out from music and effects.", "cannot hear the dialogue in films from my soundbar", "test"),
    ("Stronger Wi-Fi in far rooms", "Place the router high and central, away from metal, or add a mesh node halfway to the weak room.", "weak Wi-Fi in the back bedroom", "test"),
    ("Warming up a thermostat schedule", "Turn on early start so the thermostat learns how long each room takes to reach the target by the set time.", "the house is still cold when I wake up despite the thermostat schedule", "test"),
    ("Reading comfortably at night", "Lower the front light and switch on the warm light filter; dark mode also reduces brightness.", "the e-reader screen is too bright in bed at night", "test"),
    ("Unclogging the dishwasher filter", "Twist out the cylindrical filter at the bottom, rinse it under the tap and scrub the mesh with a soft brush.", "water stays at the bottom after washing dishes", "train"),
    ("Making the kettle boil faster", "Boil only the water you need; the minimum mark is enough for one cup and takes under a minute.", "tea water takes ages to heat", "train"),
    ("Even baking results", "Use the fan setting and bake on the middle shelf; lower the stated temperature by 20 degrees.", "cakes brown on one side only", "train"),
    ("Emptying the vacuum base", "Replace the dust bag when the app says it is full, usually every seven weeks.", "where does the dirt go from the cleaning robot", "train"),
    ("Defrosting a heat pump", "Ice on the outdoor unit in winter is normal; the unit melts it automatically every hour or so.", "frost is forming on the outside unit", "train"),
    ("Loading the dishwasher", "Face dirty surfaces towards the spray arms and keep tall items at the sides so the arms can turn.", "dishes are still dirty after washing", "train"),
    ("Washing wool", "Use the wool program at 30 degrees with a gentle detergent and a spin of no more than 600 rpm.", "my jumper shrank in the machine", "train"),
    ("Resetting the network settings", "Hold the reset pin for ten seconds; the device reboots with factory Wi-Fi settings.", "start the internet box from scratch", "train"),
    ("Changing the purifier filter", "Replace the HEPA filter every twelve months or when the indicator turns orange.", "how often should the air cleaner cartridge be swapped", "train"),
    ("Baking gluten-free bread", "Use the gluten-free program, which mixes longer and skips the second rise.", "loaf for someone with coeliac disease", "train"),
    ("Measuring sleep accurately", "Wear the tracker a finger's width above the wrist bone and snug enough not to slide.", "my sleep data seems wrong", "train"),
    ("Choosing lamp brightness", "For reading, aim for around 500 lux at the page; the highest setting gives about that at 40 cm.", "how much light do I need for studying", "train"),
    ("Cleaning grinder burrs", "Grind a capful of rice-based cleaning tablets monthly to absorb old coffee oils.", "the ground coffee tastes stale and oily", "train"),
    ("Installing a washing machine", "Remove the transit bolts, connect the cold inlet hose and level the feet with a spirit level.", "setting up a new laundry machine", "train"),
    ("Replacing a toothbrush head", "Change the brush head every three months or when the bristles splay outwards.", "when do I need a new bristle attachment", "train"),
    ("Setting up a projector screen size", "Place the projector 2.7 metres from the wall for a 100 inch picture.", "how far from the wall for a big picture", "train"),
    ("Connecting a soundbar to the TV", "Use the HDMI port marked eARC on both devices and enable CEC so one remote controls both.", "link the speaker bar to my television", "train"),
    ("Securing the home network", "Change the default admin password and turn on WPA3 in the router settings.", "stop neighbours using my wifi", "train"),
    ("Saving energy with a thermostat", "Each degree lower on the setpoint cuts heating energy by about six percent.", "turn down the heating to save money how much", "train"),
    ("Transferring e-books", "Drag EPUB files onto the reader over USB or send them to the reader's email address.", "put my own books on the reading tablet", "train"),
]

# General pages that share vocabulary with many queries but answer none (the hard negatives of a real corpus).
POLICY = [
    ("Warranty terms", "Every appliance carries a two-year warranty covering parts and labour; wear items such as filters, bags and brush heads are excluded."),
    ("Returns within 30 days", "Unused products may be returned within 30 days in their original packaging for a full refund."),
    ("Booking a technician", "Repairs are booked online; a technician visits within five working days and the call-out is free under warranty."),
    ("Spare parts shop", "Genuine filters, hoses, bags and brush heads are sold in the spare parts shop with free delivery over 20 euros."),
    ("Recycling old appliances", "When we deliver a new appliance we take the old one away for recycling at no charge."),
    ("Energy labels explained", "The A to G energy label compares yearly consumption; the kWh figure matters more than the letter."),
    ("Safety recall notices", "If a product is recalled we email registered owners and list the affected serial numbers on this page."),
    ("Registering a product", "Register your product with its serial number to extend the warranty by one year."),
    ("Where to find the serial number", "The serial number is on a sticker inside the door, under the base or on the back panel."),
    ("Delivery and installation", "Large appliances are delivered on a two-hour slot; installation costs 49 euros and includes removing packaging."),
    ("Firmware updates", "Connected appliances update their firmware overnight when an update is available; no settings are lost."),
    ("Data and privacy", "Usage data from the app is kept for 24 months and never sold; you can delete it from the account page."),
    ("Gift cards", "Gift cards are valid for three years and can be used online or in store."),
    ("Price promise", "If you find the same product cheaper within 14 days of purchase we refund the difference."),
    ("Accessibility features", "Several models offer audio cues, high-contrast displays and tactile buttons."),
    ("Cleaning products we recommend", "Use soft cloths and mild detergent on stainless steel; abrasive sponges leave scratches."),
    ("Child lock", "Most appliances have a child lock enabled by holding the two outer buttons for three seconds."),
    ("Noise levels", "Noise is given in decibels; every 3 dB less is roughly half the sound energy."),
    ("Water hardness", "Hard water leaves limescale; set the water hardness on the appliance to match your local supply."),
    ("Standby power", "Connected appliances draw under one watt in standby with the network kept awake."),
]


def howto_docs():
    return [{"id": f"howto-{i:03d}", "title": title, "text": text} for i, (title, text, _, _) in enumerate(HOWTO)]


def policy_docs():
    return [{"id": f"info-{i:03d}", "title": title, "text": text} for i, (title, text) in enumerate(POLICY)]


def device_docs():
    return [{"id": f"dev-{i:03d}", "title": f"{device} error codes",
             "text": f"The {device} shows a code on its display when something goes wrong. Look the code up in "
                     f"this help centre, or hold the start button to clear it after fixing the cause."}
            for i, device in enumerate(DEVICES)]


CODE_TEMPLATES = ["{short} {code}", "what does {code} mean on my {noun}", "{code} on the {model}",
                  "{model} showing {code}", "how to fix {code} {noun}"]
SPEC_TEMPLATES = ["{model} specs", "tell me about the {model}", "{model} {category} details"]


def queries(errors, specs, howtos, device_pages):
    test, train = [], []
    shuffled = errors[:]
    rng.shuffle(shuffled)
    for i, doc in enumerate(shuffled[:40]):
        device = doc["device"]
        model = " ".join(device.split()[:2])
        page = next(d["id"] for d in device_pages if d["title"].startswith(device))
        text = rng.choice(CODE_TEMPLATES).format(short=model, code=doc["code"], noun=DEVICES[device], model=model)
        item = {"query": text, "relevant": {doc["id"]: 2, page: 1}}
        (test if i < 16 else train).append(item)
    shuffled = specs[:]
    rng.shuffle(shuffled)
    for i, doc in enumerate(shuffled):
        category = doc["title"][len(doc["model"]) + 1:]
        text = rng.choice(SPEC_TEMPLATES).format(model=doc["model"], category=category)
        item = {"query": text, "relevant": {doc["id"]: 2}}
        (test if i < 6 else train).append(item)
    for doc, (_, _, question, split) in zip(howtos, HOWTO):
        (test if split == "test" else train).append({"query": question, "relevant": {doc["id"]: 2}})
    for prefix, items in (("q", test), ("t", train)):
        for i, item in enumerate(items):
            item["qid"] = f"{prefix}{i:02d}"
    return [{"qid": q["qid"], "query": q["query"], "relevant": q["relevant"]} for q in test], \
           [{"qid": q["qid"], "query": q["query"], "relevant": q["relevant"]} for q in train]


def write_jsonl(path: Path, rows) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as tmp:
        for row in rows:
            tmp.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp.name, path)


if __name__ == "__main__":
    errors, specs, howtos, infos, pages = error_docs(), spec_docs(), howto_docs(), policy_docs(), device_docs()
    corpus = [{"id": d["id"], "title": d["title"], "text": d["text"]} for d in errors + specs + howtos + infos + pages]
    test, train = queries(errors, specs, howtos, pages)
    write_jsonl(HERE / "corpus.jsonl", corpus)
    write_jsonl(HERE / "queries.jsonl", test)
    write_jsonl(HERE / "train_queries.jsonl", train)
    print(f"{len(corpus)} documents, {len(test)} test queries, {len(train)} training queries")
