#!/usr/bin/env python3
"""Generate the bundled preference pairs of the Lumora Home assistant (the demo's DPO step).

These facts are news to the demo's fine-tuned model: none of them is in lumora_train.jsonl (the SFT data).
They are what a support team learns after the model was trained, and what its users would correct:

  * a newly launched product, the Lumora Beam smart bulb, and the Lumora Aura air monitor,
  * new error codes (Beam B1/B2, Aura A3, Halo E17, Dash E11, Keystone E45),
  * the Lumora Bridge 2, Apple Home support, and new services and policies (trade-in, student discount,
    a shop, Care+ Family, recycling, support languages).

Each fact has one right answer and two wrong ones (written by hand: the wrong product, or a wrong number,
code meaning, place or rule), three training questions and two held-out questions that ask the same thing in
other words. A training question is paired with one wrong answer; the held-out questions with each of them, so
the held-out pairs test whether the model learned which answer is right, asked differently, not the questions.

Everything here is fictional and was written for chatforge (Apache-2.0, like the project).

Outputs (OpenAI preference fine-tuning JSONL: input / preferred_output / non_preferred_output):
  examples/data/lumora_pairs_train.jsonl     3 training questions per fact
  examples/data/lumora_pairs_heldout.jsonl   2 held-out questions per fact

Deterministic, standard library only: running it again regenerates both files byte-identically.

Usage:
    python examples/make_preference_data.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_example_data import dumps, stable_order, write_jsonl  # noqa: E402 (the same JSONL writing as the SFT data)

SYSTEM = "You are Lumora Home's customer support assistant. Answer briefly and accurately."
DATA_DIR = Path(__file__).resolve().parent / "data"
PAIRS_TRAIN_PATH = DATA_DIR / "lumora_pairs_train.jsonl"
PAIRS_HELDOUT_PATH = DATA_DIR / "lumora_pairs_heldout.jsonl"
SFT_TRAIN_PATH = DATA_DIR / "lumora_train.jsonl"

# (fact id, right answer, [two wrong answers], [3 training questions], [2 held-out questions])
FACTS: list[tuple[str, str, list[str], list[str], list[str]]] = [
    # ----- Lumora Beam: the new smart bulb ------------------------------------------------------------------
    ("beam_launch",
     "The Lumora Beam smart bulb launched on 14 September 2026. It is Lumora's first lighting product.",
     ["The Lumora Aura smart bulb launched on 14 September 2026. It is Lumora's first lighting product.",
      "The Lumora Beam smart bulb launched on 3 March 2025. It is Lumora's first lighting product."],
     ["When did the Lumora Beam come out?", "beam release date?", "Since when can I buy the Beam bulb?"],
     ["How long has the Lumora Beam been on sale?", "What day was the Beam launched?"]),
    ("beam_price",
     "The Lumora Beam costs €24 for one bulb or €79 for a pack of four.",
     ["The Lumora Aura costs €24 for one bulb or €79 for a pack of four.",
      "The Lumora Beam costs €39 for one bulb or €119 for a pack of four."],
     ["How much is the Lumora Beam?", "price of beam bulbs", "What does a Beam bulb cost?"],
     ["Is the Beam expensive? What would I pay for it?", "How much for a four-pack of Beam bulbs?"]),
    ("beam_fitting",
     "The Lumora Beam fits standard E27 sockets. A GU10 version is planned for 2027.",
     ["The Lumora Aura fits standard E27 sockets. A GU10 version is planned for 2027.",
      "The Lumora Beam fits standard B22 sockets. A GU10 version is planned for 2027."],
     ["What socket does the Beam need?", "will the lumora beam fit my lamp", "Which base does the Lumora Beam have?"],
     ["Can I screw a Beam into my ceiling lamp? What fitting is it?", "What kind of fitting does the Beam bulb use?"]),
    ("beam_brightness",
     "The Lumora Beam gives up to 1100 lumens, about as much as a 75 W classic bulb, and uses 9 W.",
     ["The Lumora Aura gives up to 1100 lumens, about as much as a 75 W classic bulb, and uses 9 W.",
      "The Lumora Beam gives up to 800 lumens, about as much as a 60 W classic bulb, and uses 7 W."],
     ["How bright is the Lumora Beam?", "beam lumens?", "How much power does a Beam bulb draw?"],
     ["Is the Beam bright enough to replace an old incandescent bulb?", "What's the light output of the Beam?"]),
    ("beam_colours",
     "The Lumora Beam can show 16 million colours and white light from 2200 K to 6500 K.",
     ["The Lumora Halo can show 16 million colours and white light from 2200 K to 6500 K.",
      "The Lumora Beam can show 256 colours and white light from 2700 K to 5000 K."],
     ["What colours can the Beam do?", "Does the Lumora Beam do warm white?", "colour temperature range of beam"],
     ["Can the Beam bulb change colour?", "How warm or cool can the Beam's white light go?"]),
    ("beam_connect",
     "The Lumora Beam connects over Thread and needs the Lumora Bridge 2 to work with the Lumora Hub app.",
     ["The Lumora Keystone connects over Thread and needs the Lumora Bridge 2 to work with the Lumora Hub app.",
      "The Lumora Beam connects over Bluetooth and works with the Lumora Hub app without any bridge."],
     ["Does the Beam need a bridge?", "how does the lumora beam connect", "Can I use the Beam without extra hardware?"],
     ["What do I need to control a Beam bulb from my phone?", "Is the Beam a Wi-Fi bulb, or something else?"]),
    ("beam_pairing",
     "To pair a Lumora Beam, switch the lamp off and on three times. The bulb blinks blue when it is ready.",
     ["To pair a Lumora Aura, switch the lamp off and on three times. The bulb blinks blue when it is ready.",
      "To pair a Lumora Beam, switch the lamp off and on five times. The bulb blinks green when it is ready."],
     ["How do I pair the Beam?", "beam bulb pairing mode", "How do I add a Lumora Beam to my home?"],
     ["My new Beam isn't showing up in the app. How do I get it into pairing mode?",
      "What's the way to connect a brand-new Beam bulb?"]),
    ("beam_reset",
     "To factory reset the Lumora Beam, switch it off and on six times, one second apart. It flashes white twice "
     "when it is reset.",
     ["To factory reset the Lumora Aura, switch it off and on six times, one second apart. It flashes white twice "
      "when it is reset.",
      "To factory reset the Lumora Beam, switch it off and on ten times, one second apart. It flashes red twice "
      "when it is reset."],
     ["How do I reset a Beam bulb?", "factory reset lumora beam", "How can I wipe the settings of my Beam?"],
     ["My Beam bulb is acting up. How do I put it back to factory settings?",
      "What's the reset sequence for the Lumora Beam?"]),
    ("beam_warranty",
     "The Lumora Beam has a 2-year warranty and is rated for 25,000 hours of use.",
     ["The Lumora Aura has a 2-year warranty and is rated for 25,000 hours of use.",
      "The Lumora Beam has a 5-year warranty and is rated for 15,000 hours of use."],
     ["What's the warranty on the Beam?", "how long does a lumora beam last", "Is the Beam bulb covered by a guarantee?"],
     ["If my Beam dies after a year, is it covered?", "What is the rated lifetime of a Beam bulb?"]),
    ("beam_b1",
     "Error B1 on the Lumora Beam means it lost contact with the Lumora Bridge 2. Move the bridge closer to the bulb.",
     ["Error B1 on the Lumora Aura means it lost contact with the Lumora Bridge 2. Move the bridge closer to the bulb.",
      "Error B1 on the Lumora Beam means the bulb is overheating. It dims itself until it has cooled down."],
     ["What does B1 mean on my Beam?", "beam error b1", "The app shows B1 for my Lumora Beam. Why?"],
     ["I keep getting code B1 from a Beam bulb. How do I fix it?", "Beam bulb says B1 in Lumora Hub, what's happening?"]),
    ("beam_b2",
     "Error B2 on the Lumora Beam means the bulb is overheating. It dims itself until it has cooled down.",
     ["Error B2 on the Lumora Aura means the bulb is overheating. It dims itself until it has cooled down.",
      "Error B2 on the Lumora Beam means it lost contact with the Lumora Bridge 2. Move the bridge closer to the bulb."],
     ["Beam error B2?", "What is code B2 on a Lumora Beam?", "my beam shows b2 and went dim"],
     ["Why does my Beam bulb report B2?", "What should I do about error B2 on the Beam?"]),
    ("beam_sunrise",
     "The Lumora Beam's Sunrise feature brightens the bulb slowly over 30 minutes before your alarm. Set it in Lumora "
     "Hub under Beam > Sunrise.",
     ["The Lumora Halo's Sunrise feature brightens the bulb slowly over 30 minutes before your alarm. Set it in Lumora "
      "Hub under Halo > Sunrise.",
      "The Lumora Beam's Sunrise feature brightens the bulb slowly over 5 minutes before your alarm. Set it in Lumora "
      "Hub under Beam > Sunrise."],
     ["Can the Beam wake me up gradually?", "beam sunrise feature", "Does the Lumora Beam have a wake-up light?"],
     ["How do I make my Beam get brighter before my alarm goes off?", "How long does the Beam's sunrise take?"]),
    # ----- Lumora Aura: the new air monitor -----------------------------------------------------------------
    ("aura_what",
     "The Lumora Aura is an indoor air monitor that measures CO2, humidity, temperature and fine dust. It costs €129.",
     ["The Lumora Beam is an indoor air monitor that measures CO2, humidity, temperature and fine dust. It costs €129.",
      "The Lumora Aura is an indoor air monitor that measures CO2, humidity, temperature and fine dust. It costs €89."],
     ["What is the Lumora Aura?", "what does the aura measure", "How much is the Lumora Aura air monitor?"],
     ["Tell me about the Aura: what is it, and what does it cost?", "Which things does the Aura sensor keep track of?"]),
    ("aura_colours",
     "The Lumora Aura's light turns yellow above 1000 ppm of CO2 and red above 1500 ppm. Open a window when it is red.",
     ["The Lumora Halo's light turns yellow above 1000 ppm of CO2 and red above 1500 ppm. Open a window when it is red.",
      "The Lumora Aura's light turns yellow above 600 ppm of CO2 and red above 800 ppm. Open a window when it is red."],
     ["What do the Aura's colours mean?", "aura light went red", "When does the Lumora Aura turn yellow?"],
     ["My Aura is glowing red. Is that bad?", "At what CO2 level does the Aura change colour?"]),
    ("aura_battery",
     "The Lumora Aura runs about 6 months on its built-in battery and charges over USB-C in 3 hours.",
     ["The Lumora Keystone runs about 6 months on its built-in battery and charges over USB-C in 3 hours.",
      "The Lumora Aura runs about 2 weeks on its built-in battery and charges over USB-C in 3 hours."],
     ["How long does the Aura battery last?", "aura charging", "Do I need to keep the Lumora Aura plugged in?"],
     ["How often will I have to charge my Aura?", "What's the battery life of the Aura monitor?"]),
    ("aura_halo",
     "The Lumora Aura can ask the Lumora Halo to lower the heating when a window is open. Turn it on in Lumora Hub "
     "under Aura > Automations.",
     ["The Lumora Aura can ask the Lumora Dash to lower the heating when a window is open. Turn it on in Lumora Hub "
      "under Aura > Automations.",
      "The Lumora Aura cannot work with the Lumora Halo. The two devices are always controlled separately."],
     ["Can the Aura work with my Halo?", "aura halo automation", "Does the Aura talk to the thermostat?"],
     ["Is there a way to make my Halo react to what the Aura measures?", "Where do I link the Aura to the Halo?"]),
    ("aura_calibration",
     "The Lumora Aura calibrates its CO2 sensor by itself once a week, so air the room fully at least once a week.",
     ["The Lumora Beam calibrates its CO2 sensor by itself once a week, so air the room fully at least once a week.",
      "The Lumora Aura needs a manual CO2 calibration every month, in Lumora Hub under Aura > Calibrate."],
     ["Do I need to calibrate the Aura?", "aura co2 calibration", "How does the Lumora Aura stay accurate?"],
     ["Is there any calibration I have to do on my Aura?", "How often does the Aura calibrate itself?"]),
    ("aura_a3",
     "Error A3 on the Lumora Aura means the dust sensor is blocked. Blow gently into the vent on its back to clear it.",
     ["Error A3 on the Lumora Beam means the dust sensor is blocked. Blow gently into the vent on its back to clear it.",
      "Error A3 on the Lumora Aura means the battery is too cold. Move it to a room that is warmer than 5°C."],
     ["What does A3 mean on the Aura?", "aura error a3", "My Lumora Aura shows A3. What now?"],
     ["Code A3 on my Aura air monitor, what's wrong?", "How do I fix an A3 error on the Aura?"]),
    ("aura_history",
     "The Lumora Hub app keeps 2 years of Aura readings. You can export them as a CSV file under Aura > History.",
     ["The Lumora Hub app keeps 2 years of Dash readings. You can export them as a CSV file under Dash > History.",
      "The Lumora Hub app keeps 30 days of Aura readings. They cannot be exported."],
     ["How long does the app keep Aura data?", "export aura history", "Can I download my air quality readings?"],
     ["Is there a way to get my Aura measurements into a spreadsheet?", "How far back does the Aura history go?"]),
    # ----- new error codes on the other products ------------------------------------------------------------
    ("halo_e17",
     "Error E17 on the Lumora Halo means the boiler has not answered for 30 minutes. Check that the boiler is on.",
     ["Error E17 on the Lumora Dash means the boiler has not answered for 30 minutes. Check that the boiler is on.",
      "Error E17 on the Lumora Halo means a firmware update failed. Restart the Halo to try the update again."],
     ["What does E17 mean on the Halo?", "halo error e17", "My thermostat shows E17, why?"],
     ["Lumora Hub says E17 for my Halo. What's going on?", "How do I fix error E17 on the thermostat?"]),
    ("dash_e11",
     "Error E11 on the Lumora Dash means the dustbin is missing or not seated. Push the bin in until it clicks.",
     ["Error E11 on the Lumora Keystone means the dustbin is missing or not seated. Push the bin in until it clicks.",
      "Error E11 on the Lumora Dash means the side brush is tangled. Remove it and cut away any hair."],
     ["What is error E11 on the Dash?", "dash e11", "Why does my robot vacuum say E11?"],
     ["Got an E11 from my Dash. What should I check?", "The Dash stopped with E11. Help?"]),
    ("keystone_e45",
     "Error E45 on the Lumora Keystone means the fingerprint reader is dirty or wet. Dry it with a soft cloth.",
     ["Error E45 on the Lumora Halo means the fingerprint reader is dirty or wet. Dry it with a soft cloth.",
      "Error E45 on the Lumora Keystone means the batteries are too weak for the motor. Replace all 4 batteries."],
     ["What does E45 mean on my Keystone?", "keystone e45 error", "My smart lock shows E45 when I use my finger."],
     ["Keystone says E45 and won't read my fingerprint. What do I do?", "How do I clear error E45 on the lock?"]),
    # ----- the Bridge 2 and Apple Home ----------------------------------------------------------------------
    ("bridge2",
     "The Lumora Bridge 2 costs €69 and replaces the first Lumora Bridge. It adds Thread and Matter support.",
     ["The Lumora Bridge 2 costs €99 and replaces the first Lumora Bridge. It adds Thread and Matter support.",
      "The Lumora Bridge 2 costs €69 and replaces the first Lumora Bridge. It adds Zigbee support only."],
     ["What is the Lumora Bridge 2?", "bridge 2 price", "How is the Bridge 2 different from the old Bridge?"],
     ["Should I upgrade to the Bridge 2, and what does it cost?", "What's new in the second Lumora Bridge?"]),
    ("apple_home",
     "Since Lumora Hub 6.0, the Halo, Keystone and Beam work with Apple Home through Matter, using the Bridge 2.",
     ["Since Lumora Hub 6.0, the Dash, Keystone and Beam work with Apple Home through Matter, using the Bridge 2.",
      "Since Lumora Hub 6.0, the Halo, Keystone and Beam work with Apple Home through Matter, with no bridge."],
     ["Does Lumora work with Apple Home?", "lumora matter support", "Can I control my Keystone from the Apple Home app?"],
     ["Is HomeKit supported by Lumora devices now?", "Which Lumora devices work in Apple Home, and what do I need?"]),
    # ----- new services and policies ------------------------------------------------------------------------
    ("trade_in",
     "With Lumora Trade-In you get €40 off a new Halo when you send back any old thermostat. Start it in Lumora Hub "
     "under Account > Trade-In.",
     ["With Lumora Trade-In you get €40 off a new Dash when you send back any old thermostat. Start it in Lumora Hub "
      "under Account > Trade-In.",
      "With Lumora Trade-In you get €15 off a new Halo when you send back any old thermostat. Start it in Lumora Hub "
      "under Account > Trade-In."],
     ["Is there a trade-in offer?", "lumora trade in thermostat", "Do I get anything for my old thermostat?"],
     ["Can I swap my old thermostat for a discount?", "How much is the trade-in credit on a Halo?"]),
    ("student_discount",
     "Students get 10% off Lumora products with a student ID checked by UNiDAYS. It cannot be combined with other "
     "codes.",
     ["Students get 25% off Lumora products with a student ID checked by UNiDAYS. It cannot be combined with other "
      "codes.",
      "Students get 10% off Lumora products with a student ID checked by UNiDAYS. It can be combined with any other "
      "code."],
     ["Do you have a student discount?", "student discount lumora", "I'm at university, can I get money off?"],
     ["Are there special prices for students?", "How much do students save at Lumora?"]),
    ("shop",
     "Lumora's first shop opened in Lisbon, at Rua Augusta 118, in October 2026. It is open every day from 10:00 to "
     "20:00.",
     ["Lumora's first shop opened in Madrid, at Gran Vía 118, in October 2026. It is open every day from 10:00 to "
      "20:00.",
      "Lumora's first shop opened in Lisbon, at Rua Augusta 118, in October 2026. It is open Monday to Friday from "
      "9:00 to 17:00."],
     ["Does Lumora have a physical store?", "lumora shop address", "Where can I see Lumora products in person?"],
     ["Is there a Lumora store I can visit?", "Where's the Lumora showroom, and when is it open?"]),
    ("careplus_family",
     "Lumora Care+ Family costs €99 per year and covers up to 20 devices in two homes.",
     ["Lumora Care+ Family costs €149 per year and covers up to 20 devices in two homes.",
      "Lumora Care+ Family costs €99 per year and covers up to 10 devices in one home."],
     ["What is Care+ Family?", "care plus family price", "Can one Care+ plan cover my holiday home too?"],
     ["I have two houses. Is there a Care+ option for both?", "How much does the family version of Care+ cost?"]),
    ("recycling",
     "Lumora takes back any old Lumora device for free recycling. Print a free label in Lumora Hub under Account > "
     "Recycle.",
     ["Lumora charges €5 to recycle an old Lumora device. Buy the label in Lumora Hub under Account > Recycle.",
      "Lumora does not take back old devices. Take them to your local electronics recycling point."],
     ["How do I recycle my old Lumora device?", "lumora recycling", "What should I do with a broken Dash I don't need?"],
     ["Can I send an old Keystone back to be recycled?", "Does Lumora take old devices back?"]),
    ("support_languages",
     "Lumora support answers in English, Portuguese, Dutch, German and Spanish, by phone, email and chat.",
     ["Lumora support answers in English and Portuguese only, by phone, email and chat.",
      "Lumora support answers in English, Portuguese, French, Italian and Polish, by phone, email and chat."],
     ["Which languages does Lumora support speak?", "support in german?", "Can I get help in Dutch?"],
     ["Do your support agents speak Spanish?", "In what languages can I contact Lumora support?"]),
]


def preference(question: str, chosen: str, rejected: str) -> dict:
    return {"input": {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}


def check_facts(sft_text: str | None = None) -> None:
    """Every fact well formed, asked differently in training and held-out, and absent from the SFT data."""
    ids = [f[0] for f in FACTS]
    assert len(ids) == len(set(ids)), "duplicate fact ids"
    questions = [q.lower() for f in FACTS for q in f[3] + f[4]]
    assert len(questions) == len(set(questions)), "a question is used twice"
    for fact_id, right, wrong, train_qs, heldout_qs in FACTS:
        assert len(wrong) == 2 and right not in wrong and wrong[0] != wrong[1], fact_id
        assert len(train_qs) == 3 and len(heldout_qs) == 2, fact_id
        assert 8 <= len(right.split()) <= 40, fact_id
        if sft_text is not None:
            assert right not in sft_text, f"{fact_id}: the right answer is in the SFT data"


def build_pairs() -> tuple[list[dict], list[dict]]:
    """Training: each question paired with a wrong answer, in turn; held-out: each question with one of them."""
    sft = SFT_TRAIN_PATH.read_text(encoding="utf-8") if SFT_TRAIN_PATH.is_file() else None
    check_facts(sft)
    train, heldout = [], []
    for i, (_, right, wrong, train_qs, heldout_qs) in enumerate(FACTS):
        for j, q in enumerate(train_qs):
            train.append(preference(q, right, wrong[(i + j) % 2]))
        for j, q in enumerate(heldout_qs):
            heldout.append(preference(q, right, wrong[j]))
    return stable_order(train), stable_order(heldout)


def main() -> None:
    train, heldout = build_pairs()
    write_jsonl(PAIRS_TRAIN_PATH, train)
    write_jsonl(PAIRS_HELDOUT_PATH, heldout)
    print(f"facts: {len(FACTS)}; wrote {len(train)} preference pairs to {PAIRS_TRAIN_PATH} and {len(heldout)} "
          f"held-out pairs to {PAIRS_HELDOUT_PATH}")


if __name__ == "__main__":
    main()
