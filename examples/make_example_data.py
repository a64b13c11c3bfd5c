#!/usr/bin/env python3
"""Generate the bundled chatforge example dataset (Lumora Home support KB).

Lumora Home, its products (Lumora Halo, Lumora Dash, Lumora Keystone,
Lumora Bridge), the Lumora Hub app and the Lumora Care+ plan are entirely
fictional. Every fact, question and answer below was written for chatforge,
so a pretrained model cannot already know them: a fine-tuned model should do
clearly better than the base model on the held-out questions.

Each fact has:
  * one canonical short answer (English; plus a Chinese answer for a few facts),
  * 4 training phrasings of the user question,
  * 1 held-out phrasing that never appears in training.

Outputs (OpenAI chat format, one JSON object per line, UTF-8):
  examples/data/lumora_train.jsonl
  examples/data/lumora_heldout.jsonl

The preference pairs of the demo's DPO step (facts that are not in this SFT data) are written by
examples/make_preference_data.py.

The script is deterministic and uses only the standard library: running it
again regenerates both files byte-identically.

Usage:
    python examples/make_example_data.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SYSTEM = (
    "You are Lumora Home's customer support assistant. "
    "Answer briefly and accurately."
)

DATA_DIR = Path(__file__).resolve().parent / "data"
TRAIN_PATH = DATA_DIR / "lumora_train.jsonl"
HELDOUT_PATH = DATA_DIR / "lumora_heldout.jsonl"

# Number of two-exchange (user, assistant, user, assistant) training rows.
N_MULTI_TURN = 34

# ---------------------------------------------------------------------------
# Fact table.  Each entry: (fact_id, canonical answer, [4 training questions],
# held-out question).
# ---------------------------------------------------------------------------
FACTS: list[tuple[str, str, list[str], str]] = [
    # ----- Company ---------------------------------------------------------
    (
        "company_founded",
        "Lumora Home was founded in 2016 by Mira Castell and Tobias Wren.",
        [
            "When was Lumora Home founded?",
            "who started lumora?",
            "How old is Lumora Home as a company?",
            "What year did Lumora get started, and by whom?",
        ],
        "Who are the founders of Lumora Home?",
    ),
    (
        "company_hq",
        "Lumora Home is headquartered in Porto, Portugal, with a second office in Utrecht, Netherlands.",
        [
            "Where is Lumora Home based?",
            "where's your headquarters?",
            "Which city is Lumora located in?",
            "Is Lumora a Portuguese company?",
        ],
        "In what country does Lumora Home have its main office?",
    ),
    (
        "support_hours",
        "Lumora support is open Monday to Saturday, 8:00 to 20:00 Central European Time. It is closed on Sundays.",
        [
            "What are your support hours?",
            "when can i call customer service?",
            "Is support open on Sundays?",
            "What time does Lumora support close?",
        ],
        "Can I reach someone at Lumora on a Saturday evening?",
    ),
    (
        "support_phone",
        "You can call Lumora support on +351 800 555 210 during opening hours. The call is free from Portugal.",
        [
            "What's the phone number for Lumora support?",
            "how do i call you guys",
            "Is there a hotline I can ring?",
            "Give me the customer service number please.",
        ],
        "Which number should I dial to talk to a Lumora agent?",
    ),
    (
        "support_email",
        "You can email Lumora support at help@lumorahome.com. We reply within one business day.",
        [
            "What's your support email address?",
            "can i email you instead of calling?",
            "How fast do you answer emails?",
            "Where do I send an email about a problem with my device?",
        ],
        "Is there an email I can write to for help?",
    ),
    (
        "live_chat",
        "Live chat is in the Lumora Hub app under Help > Chat. It is staffed 24/7 for Lumora Care+ members and during support hours for everyone else.",
        [
            "Do you have live chat?",
            "Where can I chat with an agent?",
            "is chat support available at night?",
            "How do I open a chat with support in the app?",
        ],
        "I'd rather text than call. Is there a chat option?",
    ),
    (
        "shipping_regions",
        "Lumora Home ships to the EU, the United Kingdom, Norway, Switzerland and Canada. We do not ship to the United States yet.",
        [
            "Which countries do you ship to?",
            "Do you deliver to the US?",
            "can i order from canada?",
            "Where does Lumora ship?",
        ],
        "I live in Texas. Can I get a Lumora product delivered?",
    ),
    (
        "shipping_cost",
        "Shipping is free on orders over €49. Smaller orders have a flat €4.90 shipping fee.",
        [
            "How much is shipping?",
            "Is shipping free?",
            "what's the minimum order for free delivery",
            "Do I pay delivery fees on a small order?",
        ],
        "If I only buy a €30 accessory, what will shipping cost me?",
    ),
    (
        "delivery_time",
        "Orders within the EU usually arrive in 2 to 4 business days. Deliveries to the UK, Norway, Switzerland and Canada take 4 to 8 business days.",
        [
            "How long does delivery take?",
            "When will my order arrive?",
            "how many days for shipping to germany?",
            "How long does it take to ship to Canada?",
        ],
        "What's the usual delivery time for an order to France?",
    ),
    (
        "return_window",
        "You can return any Lumora product within 45 days of delivery for a full refund, even if it has been opened.",
        [
            "What is your return policy?",
            "How many days do I have to return something?",
            "can i return an opened product?",
            "What's the return window?",
        ],
        "I got my vacuum five weeks ago and don't like it. Is it too late to send it back?",
    ),
    (
        "return_shipping",
        "Returns are free: request a prepaid return label in the Lumora Hub app under Account > Orders > Return.",
        [
            "Do I have to pay for return shipping?",
            "How do I get a return label?",
            "how do i start a return",
            "Where do I request a return?",
        ],
        "Who covers the postage when I send a product back?",
    ),
    (
        "refund_time",
        "Refunds are issued to your original payment method within 7 business days after we receive your return.",
        [
            "How long do refunds take?",
            "When will I get my money back?",
            "i sent my return, when is the refund coming",
            "How is the refund paid?",
        ],
        "My return arrived at your warehouse yesterday. How soon will the refund show up?",
    ),
    (
        "spare_parts",
        "Lumora keeps spare parts available for at least 7 years after a product stops being sold.",
        [
            "How long do you sell spare parts?",
            "Will I still be able to get parts in a few years?",
            "do you stock replacement parts for old models?",
            "What's your spare parts policy?",
        ],
        "If my device is discontinued, can I still buy replacement parts?",
    ),
    (
        "referral",
        "With the Lumora referral program, your friend gets €20 off their first order and you get a €20 credit once it ships.",
        [
            "Do you have a referral program?",
            "Can I get a discount for referring a friend?",
            "how does refer a friend work",
            "What do I get if I recommend Lumora to someone?",
        ],
        "Is there a reward for inviting friends to buy from Lumora?",
    ),
    (
        "data_location",
        "Lumora stores all account and device data on servers in Frankfurt, Germany, inside the EU.",
        [
            "Where is my data stored?",
            "Are your servers in the EU?",
            "where do you keep customer data",
            "Is my thermostat data stored outside Europe?",
        ],
        "In which country are Lumora's cloud servers located?",
    ),
    (
        "firmware_updates",
        "Lumora devices install firmware updates automatically between 2:00 and 4:00 at night, local time.",
        [
            "How do firmware updates work?",
            "When do my devices update?",
            "do i have to update the firmware manually?",
            "Why did my device restart in the middle of the night?",
        ],
        "At what time of day are firmware updates applied?",
    ),
    # ----- Lumora Care+ ----------------------------------------------------
    (
        "careplus_price",
        "Lumora Care+ costs €6.99 per month or €69 per year.",
        [
            "How much is Lumora Care+?",
            "What does Care+ cost?",
            "is there a yearly price for care+",
            "How much is the Care+ subscription per month?",
        ],
        "What's the annual fee for Lumora Care+?",
    ),
    (
        "careplus_benefits",
        "Lumora Care+ extends warranties to 5 years, covers accidental damage, adds 24/7 chat support and gives 15% off accessories.",
        [
            "What does Lumora Care+ include?",
            "What are the benefits of Care+?",
            "why should i get care+",
            "What do I get with a Care+ subscription?",
        ],
        "Is Care+ worth it? What's in the plan?",
    ),
    (
        "careplus_devices",
        "One Lumora Care+ subscription covers up to 10 Lumora devices in the same household.",
        [
            "How many devices does Care+ cover?",
            "Do I need a separate Care+ plan for each device?",
            "does care+ cover all my lumora stuff",
            "Is there a device limit on Care+?",
        ],
        "I have a Halo, two Keystones and a Dash. Does one Care+ plan cover all of them?",
    ),
    (
        "careplus_cancel",
        "You can cancel Lumora Care+ at any time in the Lumora Hub app under Account > Subscriptions. There is no cancellation fee.",
        [
            "How do I cancel Care+?",
            "Can I cancel my subscription anytime?",
            "is there a fee to cancel care+",
            "Where do I stop my Care+ plan?",
        ],
        "I want to end my Lumora Care+ membership. How?",
    ),
    (
        "careplus_accidental",
        "Lumora Care+ covers up to 2 accidental damage claims per year, with a €29 service fee per claim.",
        [
            "Does Care+ cover accidental damage?",
            "I dropped my thermostat, is that covered by Care+?",
            "how many damage claims can i make with care+",
            "Is there a fee for an accidental damage claim?",
        ],
        "My lock got cracked when I slammed the door. What does Care+ do for that?",
    ),
    # ----- Lumora Halo (smart thermostat) ----------------------------------
    (
        "halo_warranty",
        "The Lumora Halo has a 3-year limited warranty, which you can extend to 5 years with Lumora Care+.",
        [
            "How long is the warranty on the Halo?",
            "what's the halo warranty",
            "Is the Halo covered if it breaks after 2 years?",
            "Does the thermostat come with a warranty?",
        ],
        "My Halo stopped working after two and a half years. Is it still under warranty?",
    ),
    (
        "halo_price",
        "The Lumora Halo smart thermostat costs €179, including the base plate and wall screws.",
        [
            "How much is the Lumora Halo?",
            "What's the price of the Halo thermostat?",
            "how much does the halo cost",
            "What does your smart thermostat sell for?",
        ],
        "What would I pay for a Halo?",
    ),
    (
        "halo_led_orange",
        "An orange ring on the Lumora Halo means it is currently heating.",
        [
            "What does the orange light on the Halo mean?",
            "my halo ring is orange, why?",
            "Why is my thermostat glowing orange?",
            "Halo LED orange meaning?",
        ],
        "The ring on my Halo just turned orange. What is it doing?",
    ),
    (
        "halo_led_blue",
        "A blue ring on the Lumora Halo means it is currently cooling.",
        [
            "What does the blue light on the Halo mean?",
            "why is my halo blue",
            "Halo ring turned blue, is that normal?",
            "What does a blue ring on the thermostat indicate?",
        ],
        "My Halo is showing a blue ring. What does that tell me?",
    ),
    (
        "halo_led_green",
        "A green ring on the Lumora Halo means Eco mode is on.",
        [
            "What does the green light on the Halo mean?",
            "my thermostat ring is green",
            "Why is the Halo ring green?",
            "Halo green LED meaning?",
        ],
        "What is the Halo telling me when its ring glows green?",
    ),
    (
        "halo_led_white",
        "A pulsing white ring on the Lumora Halo means it is trying to connect to Wi-Fi.",
        [
            "What does a pulsing white light on the Halo mean?",
            "halo keeps flashing white",
            "Why is my thermostat ring blinking white?",
            "The Halo ring pulses white and won't stop. What's happening?",
        ],
        "What does it mean when the Halo's ring slowly pulses white?",
    ),
    (
        "halo_led_red",
        "A solid red ring on the Lumora Halo means there is an error. Open the Lumora Hub app to see the error code.",
        [
            "What does the red light on the Halo mean?",
            "my halo is red",
            "Why is the ring on my thermostat solid red?",
            "Halo red LED, what should I do?",
        ],
        "The Halo ring went red. Is something wrong?",
    ),
    (
        "halo_factory_reset",
        "To factory reset the Lumora Halo, press and hold the ring for 12 seconds until it flashes purple.",
        [
            "How do I factory reset the Halo?",
            "how to reset my halo thermostat",
            "I want to wipe my Halo before selling it. How?",
            "What's the reset procedure for the Halo?",
        ],
        "How can I restore the Halo to its factory settings?",
    ),
    (
        "halo_restart",
        "To restart the Lumora Halo without losing settings, press and hold the ring for 4 seconds.",
        [
            "How do I restart the Halo?",
            "how to reboot halo without resetting it",
            "Can I turn the Halo off and on again?",
            "What's a soft reset on the Halo?",
        ],
        "My Halo is frozen. How do I reboot it but keep my schedule?",
    ),
    (
        "halo_wifi",
        "The Lumora Halo connects only to 2.4 GHz Wi-Fi networks. It does not support 5 GHz.",
        [
            "Does the Halo work with 5 GHz Wi-Fi?",
            "What Wi-Fi does the Halo need?",
            "halo won't see my 5ghz network",
            "Which Wi-Fi band does the thermostat use?",
        ],
        "Can I connect my Halo to a 5 GHz router?",
    ),
    (
        "halo_power",
        "The Lumora Halo needs a C-wire for power. If you have none, use the Halo Power Adapter, which costs €19.",
        [
            "Does the Halo need a C-wire?",
            "I don't have a c wire, can I still use the Halo?",
            "How is the Halo powered?",
            "What's the Halo Power Adapter for?",
        ],
        "My wall has no common wire. Is there a way to power the Halo?",
    ),
    (
        "halo_eco_temp",
        "In Eco mode the Lumora Halo holds 17°C by default. You can change this in Lumora Hub under Halo > Eco.",
        [
            "What temperature does Eco mode use?",
            "what's the default eco temperature on the halo",
            "How cold does the Halo go in Eco mode?",
            "Can I change the Eco mode temperature?",
        ],
        "Which temperature does the Halo keep when Eco is switched on?",
    ),
    (
        "halo_temp_range",
        "You can set the Lumora Halo anywhere from 5°C to 32°C.",
        [
            "What is the temperature range of the Halo?",
            "How high can I set the Halo?",
            "what's the lowest temp the halo allows",
            "Can the Halo go below 10 degrees?",
        ],
        "What are the minimum and maximum temperatures I can set on the Halo?",
    ),
    (
        "halo_firmware",
        "The latest Lumora Halo firmware is version 4.2.1. You can check your version in Lumora Hub under Halo > About.",
        [
            "What's the latest Halo firmware?",
            "Is my Halo up to date?",
            "which firmware version is current for the halo",
            "How do I see the Halo's firmware version?",
        ],
        "What firmware number should an up-to-date Halo be running?",
    ),
    (
        "halo_e14",
        "Error E14 on the Lumora Halo means it lost its Wi-Fi connection for over 10 minutes. Restart your router, then restart the Halo.",
        [
            "What does error E14 mean on the Halo?",
            "halo says E14",
            "My thermostat shows E14, how do I fix it?",
            "What is Halo error code E14?",
        ],
        "Lumora Hub reports E14 for my thermostat. What's wrong?",
    ),
    (
        "halo_e22",
        "Error E22 on the Lumora Halo means it is not getting power from the C-wire. Check the wiring or use the Halo Power Adapter.",
        [
            "What does error E22 mean on the Halo?",
            "halo error e22",
            "My Halo shows E22. What should I do?",
            "What is Halo error code E22?",
        ],
        "The thermostat is throwing E22. How do I solve that?",
    ),
    (
        "halo_e31",
        "Error E31 on the Lumora Halo means the temperature sensor has failed. Contact Lumora support for a warranty replacement.",
        [
            "What does error E31 mean on the Halo?",
            "halo says e31",
            "My thermostat shows E31, can I fix it myself?",
            "What is Halo error code E31?",
        ],
        "E31 just appeared on my Halo. Is it serious?",
    ),
    (
        "halo_compat",
        "The Lumora Halo works with most 24 V heating systems, including boilers and heat pumps, but not with 230 V electric heaters.",
        [
            "Is the Halo compatible with my heating system?",
            "Does the Halo work with a heat pump?",
            "can i use the halo with electric baseboard heaters",
            "What heating systems does the Halo support?",
        ],
        "Will the Halo control my gas boiler?",
    ),
    (
        "halo_battery_backup",
        "The Lumora Halo has a backup battery that keeps your schedule and settings for 48 hours during a power cut.",
        [
            "What happens to the Halo during a power outage?",
            "Does the Halo have a battery?",
            "will i lose my schedule if the power goes out",
            "How long does the Halo's backup battery last?",
        ],
        "We had a blackout last night. Did my Halo forget its settings?",
    ),
    (
        "halo_away_assist",
        "Away Assist lowers the Lumora Halo's temperature when every household phone is more than 2 km from home.",
        [
            "What is Away Assist?",
            "How does the Halo know I'm not home?",
            "does the halo have geofencing",
            "When does Away Assist turn the heating down?",
        ],
        "How far from home do we need to be before the Halo switches to away?",
    ),
    (
        "halo_voice",
        "The Lumora Halo works with Amazon Alexa and Google Assistant. Apple Siri is not supported.",
        [
            "Does the Halo work with Alexa?",
            "Can I control the Halo with Siri?",
            "which voice assistants work with the halo",
            "Is the Halo compatible with Google Home?",
        ],
        "Can I ask a voice assistant to change the Halo's temperature?",
    ),
    (
        "halo_install",
        "Most people install the Lumora Halo themselves in about 30 minutes, following the guide in the Lumora Hub app.",
        [
            "How long does it take to install the Halo?",
            "Do I need an electrician for the Halo?",
            "is the halo hard to install",
            "Can I install the thermostat myself?",
        ],
        "How much time should I set aside to put in a Halo?",
    ),
    # ----- Lumora Dash (robot vacuum) --------------------------------------
    (
        "dash_price",
        "The Lumora Dash robot vacuum costs €449, including its charging dock and one spare filter.",
        [
            "How much is the Lumora Dash?",
            "What's the price of the Dash vacuum?",
            "how much does the dash cost",
            "What does your robot vacuum sell for?",
        ],
        "What would I pay for a Dash?",
    ),
    (
        "dash_warranty",
        "The Lumora Dash has a 2-year limited warranty, with 1 year on the battery. Lumora Care+ extends it to 5 years.",
        [
            "How long is the warranty on the Dash?",
            "what's the dash warranty",
            "Is the Dash battery covered by the warranty?",
            "Does the robot vacuum come with a warranty?",
        ],
        "My Dash is 18 months old and broke. Is it covered?",
    ),
    (
        "dash_battery",
        "The Lumora Dash runs up to 140 minutes in Eco mode and about 90 minutes in Standard mode.",
        [
            "What's the battery life of the Dash?",
            "How long can the Dash clean on one charge?",
            "how many minutes does the dash run",
            "Does the Dash last long enough for a big apartment?",
        ],
        "How long will a fully charged Dash keep vacuuming?",
    ),
    (
        "dash_charge_time",
        "The Lumora Dash takes about 4 hours to charge fully on its dock.",
        [
            "How long does the Dash take to charge?",
            "What's the charging time for the Dash?",
            "how long to fully charge the dash",
            "When will my Dash be fully charged?",
        ],
        "How many hours does the Dash need on the dock to reach 100%?",
    ),
    (
        "dash_dustbin",
        "The Lumora Dash has a 0.5-litre dustbin, which is enough for about one week of daily cleaning.",
        [
            "How big is the Dash dustbin?",
            "What's the bin capacity of the Dash?",
            "how much dirt does the dash hold",
            "What size is the Dash's dust container?",
        ],
        "How many litres does the Dash's bin hold?",
    ),
    (
        "dash_led_green",
        "A solid green light on the Lumora Dash means it is fully charged.",
        [
            "What does the green light on the Dash mean?",
            "dash light is solid green",
            "Why is my robot vacuum showing green?",
            "Dash green LED meaning?",
        ],
        "My Dash is sitting on the dock with a steady green light. What does it mean?",
    ),
    (
        "dash_led_amber",
        "A pulsing amber light on the Lumora Dash means it is charging.",
        [
            "What does the amber light on the Dash mean?",
            "dash is blinking orange on the dock",
            "Why is my Dash pulsing amber?",
            "Dash amber LED meaning?",
        ],
        "The Dash light is slowly pulsing yellow-orange. What's going on?",
    ),
    (
        "dash_led_red",
        "A flashing red light on the Lumora Dash means it is stuck or has an error. Check the Lumora Hub app for the error code.",
        [
            "What does the red light on the Dash mean?",
            "dash flashing red",
            "Why is my robot vacuum blinking red?",
            "Dash red LED meaning?",
        ],
        "My Dash stopped and flashes red. What should I do?",
    ),
    (
        "dash_reset",
        "To factory reset the Lumora Dash, press and hold the Home and Spot buttons together for 10 seconds until it beeps.",
        [
            "How do I factory reset the Dash?",
            "how to reset my dash vacuum",
            "What's the reset procedure for the Dash?",
            "I want to wipe my Dash before giving it away. How?",
        ],
        "Which buttons do I hold to restore the Dash to factory settings?",
    ),
    (
        "dash_e05",
        "Error E05 on the Lumora Dash means the main brush is jammed. Remove the brush, clear any hair or debris, and refit it.",
        [
            "What does error E05 mean on the Dash?",
            "dash says e05",
            "My robot vacuum shows E05. How do I fix it?",
            "What is Dash error code E05?",
        ],
        "The Dash stopped with code E05. What's the problem?",
    ),
    (
        "dash_e07",
        "Error E07 on the Lumora Dash means a wheel is stuck or the robot has been lifted. Place it on a flat floor and check the wheels.",
        [
            "What does error E07 mean on the Dash?",
            "dash error e07",
            "My Dash shows E07. What should I do?",
            "What is Dash error code E07?",
        ],
        "Lumora Hub says my vacuum has E07. What does that mean?",
    ),
    (
        "dash_e09",
        "Error E09 on the Lumora Dash means the cliff sensors are dirty. Wipe the sensors under the robot with a dry cloth.",
        [
            "What does error E09 mean on the Dash?",
            "dash says e09",
            "My robot vacuum shows E09, how do I fix it?",
            "What is Dash error code E09?",
        ],
        "What should I do about an E09 on my Dash?",
    ),
    (
        "dash_suction",
        "The Lumora Dash has up to 4000 Pa of suction in Max mode.",
        [
            "How strong is the Dash's suction?",
            "What's the suction power of the Dash?",
            "how many pa does the dash have",
            "Is the Dash powerful enough for carpets?",
        ],
        "What is the maximum suction of the Dash in pascals?",
    ),
    (
        "dash_filter",
        "Replace the Lumora Dash filter every 3 months and the main brush every 6 months.",
        [
            "How often should I replace the Dash filter?",
            "When do I change the brush on the Dash?",
            "how often do dash parts need replacing",
            "What maintenance does the Dash need?",
        ],
        "How frequently should the Dash's filter and brush be swapped?",
    ),
    (
        "dash_threshold",
        "The Lumora Dash can climb thresholds and rug edges up to 2 cm high.",
        [
            "Can the Dash climb over thresholds?",
            "How high an obstacle can the Dash go over?",
            "will the dash get over a rug",
            "What's the maximum threshold height for the Dash?",
        ],
        "There's a 1.5 cm step between my rooms. Can the Dash cross it?",
    ),
    (
        "dash_noise",
        "The Lumora Dash runs at about 58 dB in Eco mode.",
        [
            "How loud is the Dash?",
            "Is the Dash quiet?",
            "what's the noise level of the dash",
            "How many decibels does the Dash make?",
        ],
        "Will the Dash be noisy while I'm working from home?",
    ),
    (
        "dash_maps",
        "The Lumora Dash can store up to 4 floor maps, so it works on several levels of your home.",
        [
            "How many maps can the Dash save?",
            "Does the Dash work on multiple floors?",
            "can the dash remember upstairs and downstairs",
            "Is there a limit on saved maps for the Dash?",
        ],
        "I have a three-storey house. Can one Dash handle every floor?",
    ),
    (
        "dash_nogo",
        "You can set no-go zones for the Lumora Dash in the Lumora Hub app under Map > Zones.",
        [
            "How do I set no-go zones on the Dash?",
            "Can I stop the Dash from going into a room?",
            "how to block areas for the dash",
            "Where are virtual walls for the Dash?",
        ],
        "I want the Dash to stay out of my kid's play corner. How?",
    ),
    (
        "dash_mop",
        "The Lumora Dash is vacuum-only. It does not have a mopping function.",
        [
            "Does the Dash mop?",
            "Can the Dash clean wet floors?",
            "is there a mop attachment for the dash",
            "Does the Dash vacuum and mop?",
        ],
        "Can I use the Dash to wash my kitchen tiles?",
    ),
    (
        "dash_dock",
        "The Lumora Auto-Empty Dock costs €199 and is sold separately. Its bag holds about 60 days of dirt.",
        [
            "Does the Dash empty itself?",
            "How much is the Auto-Empty Dock?",
            "how often do i change the dock bag",
            "Is there a self-emptying base for the Dash?",
        ],
        "Can I buy a station that empties the Dash's bin for me?",
    ),
    # ----- Lumora Keystone (smart lock) ------------------------------------
    (
        "keystone_price",
        "The Lumora Keystone smart lock costs €249, including two backup keys and mounting hardware.",
        [
            "How much is the Lumora Keystone?",
            "What's the price of the Keystone lock?",
            "how much does the keystone cost",
            "What does your smart lock sell for?",
        ],
        "What would I pay for a Keystone?",
    ),
    (
        "keystone_warranty",
        "The Lumora Keystone has a 3-year limited warranty, which you can extend to 5 years with Lumora Care+.",
        [
            "How long is the warranty on the Keystone?",
            "what's the keystone warranty",
            "Is the smart lock covered by a warranty?",
            "Does the Keystone come with a guarantee?",
        ],
        "For how many years is the Keystone covered if it fails?",
    ),
    (
        "keystone_batteries",
        "The Lumora Keystone uses 4 AA batteries, which last about 9 months with normal use.",
        [
            "What batteries does the Keystone use?",
            "How long do the Keystone batteries last?",
            "how often do i change the batteries in the lock",
            "Does the Keystone need to be wired?",
        ],
        "How many months do the Keystone's batteries usually last?",
    ),
    (
        "keystone_low_battery",
        "When the batteries reach 15%, the Lumora Keystone blinks red and the Lumora Hub app sends a low-battery warning.",
        [
            "How do I know when the Keystone battery is low?",
            "Will the lock warn me before the batteries die?",
            "why is my keystone blinking red",
            "What does the Keystone do when it's low on power?",
        ],
        "Does the Keystone give any signal when its batteries are running out?",
    ),
    (
        "keystone_usbc",
        "If the Lumora Keystone's batteries die, hold a power bank to the USB-C port on the bottom of the keypad to power it and unlock.",
        [
            "What if the Keystone batteries are dead?",
            "I'm locked out and the lock has no power. Help!",
            "can i power the keystone from outside",
            "What is the USB-C port on the Keystone for?",
        ],
        "The Keystone is completely flat and I'm outside. How do I get in?",
    ),
    (
        "keystone_keys",
        "Yes. The Lumora Keystone comes with two physical backup keys.",
        [
            "Does the Keystone have a key?",
            "Can I still use a normal key with the Keystone?",
            "how many keys come with the keystone",
            "Is there a mechanical backup for the smart lock?",
        ],
        "Are there regular metal keys included with the Keystone?",
    ),
    (
        "keystone_pins",
        "The Lumora Keystone stores up to 50 PIN codes, each 4 to 8 digits long.",
        [
            "How many PIN codes can the Keystone store?",
            "How long can a Keystone code be?",
            "how many people can have a code for the lock",
            "What's the PIN length on the Keystone?",
        ],
        "What's the maximum number of keypad codes on a Keystone?",
    ),
    (
        "keystone_autolock",
        "Auto-lock on the Lumora Keystone locks the door after 30 seconds by default. You can set it from 10 seconds to 5 minutes.",
        [
            "How does auto-lock work on the Keystone?",
            "Can I change the auto-lock delay?",
            "how long before the keystone locks itself",
            "What's the default auto-lock time?",
        ],
        "After how many seconds does the Keystone lock on its own?",
    ),
    (
        "keystone_reset",
        "To factory reset the Lumora Keystone, remove the battery cover and hold the reset button for 15 seconds until it beeps three times.",
        [
            "How do I factory reset the Keystone?",
            "how to reset my keystone lock",
            "What's the reset procedure for the Keystone?",
            "I moved house and want to wipe the Keystone. How?",
        ],
        "Where is the reset button on the Keystone and how long do I press it?",
    ),
    (
        "keystone_e41",
        "Error E41 on the Lumora Keystone means the bolt is blocked or the door is not fully closed. Close the door firmly and try again.",
        [
            "What does error E41 mean on the Keystone?",
            "keystone says e41",
            "My lock shows E41. How do I fix it?",
            "What is Keystone error code E41?",
        ],
        "The Keystone won't lock and the app shows E41. Why?",
    ),
    (
        "keystone_e42",
        "Error E42 on the Lumora Keystone means too many wrong PINs were entered. The keypad is locked for 5 minutes.",
        [
            "What does error E42 mean on the Keystone?",
            "keystone error e42",
            "My lock shows E42 and the keypad won't respond.",
            "What is Keystone error code E42?",
        ],
        "My son typed the wrong code a few times and now the Keystone says E42. What happened?",
    ),
    (
        "keystone_door",
        "The Lumora Keystone fits doors from 35 to 60 mm thick.",
        [
            "Will the Keystone fit my door?",
            "What door thickness does the Keystone support?",
            "how thick can the door be for the keystone",
            "Is my 40 mm door compatible with the Keystone?",
        ],
        "What's the range of door thicknesses the Keystone works with?",
    ),
    (
        "keystone_fingerprint",
        "The Lumora Keystone can store up to 20 fingerprints, which you enrol in the Lumora Hub app.",
        [
            "How many fingerprints can the Keystone store?",
            "Does the Keystone have a fingerprint reader?",
            "how many fingers can i register on the lock",
            "Is there a limit on fingerprints for the Keystone?",
        ],
        "How many different fingerprints can be enrolled on a Keystone?",
    ),
    (
        "keystone_weather",
        "The Lumora Keystone is rated IP55, so it handles rain and dust on exterior doors.",
        [
            "Is the Keystone waterproof?",
            "Can I install the Keystone on an outside door?",
            "what's the ip rating of the keystone",
            "Will rain damage the Keystone?",
        ],
        "Is the Keystone weather resistant?",
    ),
    (
        "keystone_remote",
        "The Lumora Keystone connects by Bluetooth. For remote access away from home you need the Lumora Bridge, which costs €59.",
        [
            "Can I unlock the Keystone remotely?",
            "Does the Keystone have Wi-Fi?",
            "what is the lumora bridge for",
            "How do I control the lock when I'm not home?",
        ],
        "I want to let a courier in while I'm at work. What do I need for the Keystone?",
    ),
    # ----- Lumora Hub (app) ------------------------------------------------
    (
        "hub_requirements",
        "The Lumora Hub app needs iOS 16 or later, or Android 11 or later.",
        [
            "What phones does the Lumora Hub app support?",
            "Does the Hub app work on my old iPhone?",
            "minimum android version for lumora hub",
            "What are the Hub app requirements?",
        ],
        "Which iOS and Android versions can run Lumora Hub?",
    ),
    (
        "hub_version",
        "The latest version of the Lumora Hub app is 5.8.",
        [
            "What's the latest version of Lumora Hub?",
            "Is my Hub app up to date?",
            "which version of the lumora app is current",
            "What version number is the newest Hub app?",
        ],
        "What is the current release of the Lumora Hub app?",
    ),
    (
        "hub_household",
        "You can invite up to 8 household members in the Lumora Hub app under Settings > Household.",
        [
            "How do I share my devices with family?",
            "How many people can use my Lumora account?",
            "can my partner control the thermostat too",
            "Where do I add household members?",
        ],
        "I want my roommates to control the Dash as well. How do I add them?",
    ),
    (
        "hub_2fa",
        "You can turn on two-factor authentication in the Lumora Hub app under Settings > Security.",
        [
            "Does Lumora Hub support two-factor authentication?",
            "How do I enable 2FA?",
            "how can i make my lumora account more secure",
            "Where is the 2FA setting?",
        ],
        "Can I add a second login step to my Lumora account?",
    ),
    (
        "hub_energy_report",
        "The Lumora Hub app sends a monthly Energy Report on the first day of each month, showing your Halo's heating and cooling usage.",
        [
            "What is the Energy Report?",
            "When do I get my energy report?",
            "does the app show how much energy i use",
            "How often does Lumora send energy reports?",
        ],
        "Is there a summary of my heating usage in the app, and when does it arrive?",
    ),
    (
        "hub_password_reset",
        "To reset your Lumora password, tap Forgot password on the Lumora Hub login screen and follow the link we email you.",
        [
            "I forgot my Lumora password.",
            "How do I reset my password?",
            "cant log in to lumora hub",
            "How can I change my account password if I don't remember it?",
        ],
        "I'm locked out of the Hub app because I lost my password. What now?",
    ),
]

# ---------------------------------------------------------------------------
# Chinese (Simplified) content for a subset of facts.  Each entry:
# fact_id -> (canonical Chinese answer, [training questions], [held-out questions])
# ---------------------------------------------------------------------------
CHINESE: dict[str, tuple[str, list[str], list[str]]] = {
    "halo_warranty": (
        "Lumora Halo 提供 3 年有限保修，订阅 Lumora Care+ 后可延长至 5 年。",
        ["Lumora Halo 的保修期是多久？"],
        ["我的 Halo 温控器用了两年坏了，还在保修范围内吗？"],
    ),
    "halo_e14": (
        "Lumora Halo 显示错误 E14 表示它与 Wi-Fi 断开超过 10 分钟。请先重启路由器，再重启 Halo。",
        ["Halo 温控器显示 E14 是什么意思？"],
        ["我的温控器出现 E14 错误，该怎么解决？"],
    ),
    "halo_factory_reset": (
        "要将 Lumora Halo 恢复出厂设置，请按住圆环 12 秒，直到它闪烁紫色。",
        ["怎么把 Halo 恢复出厂设置？"],
        [],
    ),
    "return_window": (
        "所有 Lumora 产品在收货后 45 天内都可以退货并全额退款，即使已经拆封。",
        ["退货期限是多少天？"],
        ["东西已经拆封了，还能退吗？"],
    ),
    "support_hours": (
        "Lumora 客服的服务时间为周一至周六，中欧时间 8:00 至 20:00，周日休息。",
        ["你们的客服几点上班？"],
        [],
    ),
    "shipping_regions": (
        "Lumora Home 可配送至欧盟、英国、挪威、瑞士和加拿大，目前暂不配送到美国。",
        ["你们可以发货到哪些国家？"],
        [],
    ),
    "dash_battery": (
        "Lumora Dash 在节能模式下最长可运行 140 分钟，标准模式下约 90 分钟。",
        ["Dash 扫地机器人充一次电能用多久？"],
        ["Dash 的续航时间有多长？"],
    ),
    "dash_e05": (
        "Lumora Dash 显示错误 E05 表示主刷被卡住。请取下主刷，清除缠绕的头发或杂物后再装回。",
        ["扫地机器人 Dash 报 E05 错误怎么办？"],
        [],
    ),
    "keystone_batteries": (
        "Lumora Keystone 使用 4 节 AA 电池，正常使用下约可维持 9 个月。",
        ["Keystone 智能锁用什么电池？"],
        [],
    ),
    "keystone_e42": (
        "Lumora Keystone 显示错误 E42 表示输错密码的次数过多，键盘将锁定 5 分钟。",
        ["Keystone 门锁出现 E42 是什么意思？"],
        [],
    ),
    "careplus_price": (
        "Lumora Care+ 的价格为每月 6.99 欧元或每年 69 欧元。",
        ["Lumora Care+ 多少钱？"],
        [],
    ),
    "company_hq": (
        "Lumora Home 总部位于葡萄牙波尔图，并在荷兰乌得勒支设有第二个办公室。",
        ["Lumora Home 的总部在哪里？"],
        [],
    ),
    "hub_household": (
        "您可以在 Lumora Hub 应用的“设置 > 家庭成员”中邀请最多 8 位家庭成员。",
        ["怎么让家人也能控制我的设备？"],
        [],
    ),
}


# ---------------------------------------------------------------------------
# Building rows
# ---------------------------------------------------------------------------
def conversation(*turns: tuple[str, str]) -> dict:
    """Build one chat row: SYSTEM followed by (user, assistant) pairs."""
    messages = [{"role": "system", "content": SYSTEM}]
    for user, assistant in turns:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    return {"messages": messages}


def dumps(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "))


def stable_order(rows: list[dict]) -> list[dict]:
    """Mix rows in a fixed, Python-version-independent order (sha256 of text)."""
    return sorted(rows, key=lambda r: hashlib.sha256(dumps(r).encode("utf-8")).hexdigest())


def check_facts() -> None:
    ids = [f[0] for f in FACTS]
    assert len(ids) == len(set(ids)), "duplicate fact ids"
    for fact_id, answer, train_qs, heldout_q in FACTS:
        n_words = len(answer.split())
        assert 10 <= n_words <= 40, (fact_id, n_words)
        assert 3 <= len(train_qs) <= 4, fact_id
        assert len({q.lower() for q in train_qs}) == len(train_qs), fact_id
        assert heldout_q.lower() not in {q.lower() for q in train_qs}, fact_id
    for fact_id in CHINESE:
        assert fact_id in ids, fact_id


def build() -> tuple[list[dict], list[dict]]:
    check_facts()
    train: list[dict] = []
    heldout: list[dict] = []

    # Single-exchange English rows: every training phrasing of every fact.
    for _fact_id, answer, train_qs, heldout_q in FACTS:
        for q in train_qs:
            train.append(conversation((q, answer)))
        heldout.append(conversation((heldout_q, answer)))

    # Two-exchange rows combining two facts.  Deterministic pairing: fact k*5
    # with fact k*5+23 (mod number of facts); the phrasing index rotates.
    n = len(FACTS)
    for k in range(N_MULTI_TURN):
        a = FACTS[(k * 5) % n]
        b = FACTS[(k * 5 + 23) % n]
        qa = a[2][k % len(a[2])]
        qb = b[2][(k + 1) % len(b[2])]
        train.append(conversation((qa, a[1]), (qb, b[1])))

    # Chinese rows.
    for _fact_id, (answer_zh, train_qs, heldout_qs) in CHINESE.items():
        for q in train_qs:
            train.append(conversation((q, answer_zh)))
        for q in heldout_qs:
            heldout.append(conversation((q, answer_zh)))

    # Held-out user questions must never equal (case-insensitively) any
    # training user message.
    train_users = {
        m["content"].strip().lower()
        for row in train
        for m in row["messages"]
        if m["role"] == "user"
    }
    for row in heldout:
        q = row["messages"][1]["content"].strip().lower()
        assert q not in train_users, q

    train = stable_order(train)
    heldout = stable_order(heldout)
    assert len({dumps(r) for r in train}) == len(train), "duplicate train rows"
    assert len({dumps(r) for r in heldout}) == len(heldout), "duplicate held-out rows"
    return train, heldout


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(dumps(row) + "\n")


def main() -> None:
    train, heldout = build()
    write_jsonl(TRAIN_PATH, train)
    write_jsonl(HELDOUT_PATH, heldout)
    multi = sum(1 for r in train if len(r["messages"]) == 5)
    print(f"facts: {len(FACTS)} (Chinese answers for {len(CHINESE)})")
    print(f"wrote {len(train)} training conversations ({multi} two-exchange) to {TRAIN_PATH}")
    print(f"wrote {len(heldout)} held-out conversations to {HELDOUT_PATH}")


if __name__ == "__main__":
    main()
