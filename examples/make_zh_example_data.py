#!/usr/bin/env python3
"""Generate the bundled Chinese example dataset (青禾电器 customer-support knowledge base).

青禾电器 (Qinghe Appliances), its products (青禾净化器 A3, 青禾扫地机 R7, 青禾电饭煲 C2, 青禾门锁 L5,
青禾网关 H1), the 青禾家 app, the 青禾无忧+ plan, its phone number and policies are entirely fictional:
every fact, question and answer here was written for chatforge, so a pretrained model cannot know them and
the held-out set shows what fine-tuning taught.

Each fact has one canonical short answer, several training phrasings of the question (hand-written core
phrasings, some with a polite opening) and one held-out phrasing that asks the same fact in other words and
never appears in training. Some training rows are two-exchange conversations (a follow-up about the same
product), and a few held-out rows are too.

Outputs (OpenAI chat format, one JSON object per line, UTF-8 written as-is):
  examples/data/qinghe_train.jsonl
  examples/data/qinghe_heldout.jsonl

Deterministic, standard library only: running it again rewrites both files byte-identically.

Usage:
    python examples/make_zh_example_data.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_example_data import stable_order, write_jsonl  # noqa: E402 (the same order and JSONL as the English data)

SYSTEM = "你是青禾电器的客服助手，请简洁、准确地回答用户的问题。"

DATA_DIR = Path(__file__).resolve().parent / "data"
TRAIN_PATH = DATA_DIR / "qinghe_train.jsonl"
HELDOUT_PATH = DATA_DIR / "qinghe_heldout.jsonl"

# Polite openings that turn each core phrasing into more training rows (the held-out ones never use them).
OPENINGS = ["", "你好，", "请问", "麻烦问一下，"]

# ---------------------------------------------------------------------------------------------------------
# Products and their facts. Error codes and warranty facts are written per product from templates below;
# every other fact is hand-written: (fact id, product or None, answer, [core training questions], held-out).
# ---------------------------------------------------------------------------------------------------------
PRODUCTS = {
    "A3": "青禾净化器 A3",
    "R7": "青禾扫地机 R7",
    "C2": "青禾电饭煲 C2",
    "L5": "青禾门锁 L5",
    "H1": "青禾网关 H1",
}

# (product, code, meaning + what to do)
ERROR_CODES = [
    ("A3", "E1", "滤网没有装好。请打开后盖，把滤网按箭头方向重新装到底，再合上后盖。"),
    ("A3", "E3", "风机故障。请断电后联系青禾客服 400-826-1717 安排维修。"),
    ("A3", "E5", "空气传感器脏了。请用干棉签轻轻擦拭侧面的传感器窗口。"),
    ("R7", "E2", "主刷被头发或线缠住了。请取下主刷，清理缠绕物后装回。"),
    ("R7", "E4", "轮子悬空了。请把扫地机放回平整的地面再启动。"),
    ("R7", "E6", "尘盒满了或没有装好。请清空尘盒并把它装到位。"),
    ("C2", "E7", "温度传感器异常。请拔掉电源等十分钟再开机，仍然出现请联系售后。"),
    ("C2", "E8", "锅盖没有盖好。请把锅盖压下直到听到咔哒一声。"),
    ("L5", "E9", "电池电量低。请尽快更换四节五号电池，应急时可用 USB-C 线给门锁临时供电。"),
    ("L5", "E10", "指纹连续错误五次，门锁已锁定三分钟。请等三分钟后再试，或用密码开锁。"),
    ("H1", "E11", "网关断网了。请确认家里的 Wi-Fi 是 2.4GHz，并把网关放在离路由器五米以内。"),
]
ERROR_TRAIN = ["{p} 显示 {c} 是什么意思？", "{p} 报 {c} 怎么办？", "我的{p} 出现 {c} 错误，怎么处理？",
               "{c} 这个故障码在{p} 上代表什么？"]
ERROR_HELDOUT = "{p} 屏幕上一直跳 {c}，我该怎么解决？"

# (product, warranty answer)
WARRANTY = [
    ("A3", "青禾净化器 A3 整机保修两年，滤网属于耗材不在保修范围内。"),
    ("R7", "青禾扫地机 R7 整机保修一年，电池保修六个月。"),
    ("C2", "青禾电饭煲 C2 整机保修一年，内胆涂层保修三年。"),
    ("L5", "青禾门锁 L5 整机保修三年，免费上门维修。"),
    ("H1", "青禾网关 H1 保修一年。"),
]
WARRANTY_TRAIN = ["{p} 保修多久？", "{p} 的保修期是多长时间？", "{p} 坏了还在保修期吗？买了多久以内能保修？",
                  "{p} 质保几年？"]
WARRANTY_HELDOUT = "{p} 能享受多长时间的免费维修？"

FACTS: list[tuple[str, str | None, str, list[str], str]] = [
    # ----- products ---------------------------------------------------------------------------------------
    ("a3_filter", "A3", "青禾净化器 A3 的滤网建议每六个月更换一次，在青禾家 App 里可以直接购买原装滤网。",
     ["净化器 A3 的滤网多久换一次？", "A3 滤网的更换周期是多久？", "净化器滤网用多长时间需要换新的？",
      "A3 的滤网要经常换吗？"],
     "青禾净化器 A3 的过滤网隔多长时间该更新？"),
    ("a3_reset_filter", "A3", "更换滤网后，长按净化器 A3 顶部的滤网键三秒，听到滴一声提醒就清除了。",
     ["换完滤网 A3 还在提醒，怎么消除？", "净化器 A3 怎么复位滤网提醒？", "A3 的滤网灯一直亮怎么关掉？",
      "怎么清除 A3 的换滤网提示？"],
     "新滤网装好了，净化器 A3 上的更换提示灯还亮着，怎么让它熄灭？"),
    ("a3_area", "A3", "青禾净化器 A3 适用面积为 20 到 40 平方米。",
     ["净化器 A3 适合多大的房间？", "A3 的适用面积是多少？", "四十平米的客厅能用 A3 吗？",
      "A3 净化器能覆盖多少平方米？"],
     "青禾净化器 A3 最大能净化多少平米的空间？"),
    ("r7_battery", "R7", "青禾扫地机 R7 充满电可以连续清扫约 150 分钟，充满需要约四小时。",
     ["扫地机 R7 能用多久？", "R7 的续航是多少？", "R7 充一次电可以扫多长时间？", "扫地机 R7 充满电要多久？"],
     "青禾扫地机 R7 一次充电能工作多少分钟？"),
    ("r7_reset", "R7", "同时按住扫地机 R7 的回充键和电源键五秒，指示灯闪白色后即恢复出厂设置。",
     ["扫地机 R7 怎么恢复出厂设置？", "R7 如何重置？", "怎么把 R7 恢复到出厂状态？", "R7 扫地机怎么复位？"],
     "我想把青禾扫地机 R7 的设置全部清空回到初始状态，应该怎么操作？"),
    ("r7_mop", "R7", "青禾扫地机 R7 支持扫拖一体，装上水箱和拖布就能拖地，不能用于地毯。",
     ["扫地机 R7 能拖地吗？", "R7 有拖地功能吗？", "R7 可以扫拖一起吗？", "R7 怎么用来拖地？"],
     "青禾扫地机 R7 除了扫地还能湿拖地面吗？"),
    ("c2_capacity", "C2", "青禾电饭煲 C2 容量为三升，适合二到五人使用。",
     ["电饭煲 C2 多大容量？", "C2 电饭煲能煮几个人的饭？", "C2 是几升的？", "一家五口用 C2 够吗？"],
     "青禾电饭煲 C2 的内胆能装多少升？"),
    ("c2_reserve", "C2", "在电饭煲 C2 上按预约键选择时间再按开始，最长可以预约 24 小时。",
     ["电饭煲 C2 怎么预约煮饭？", "C2 可以定时煮饭吗？", "C2 的预约功能最长多久？", "怎么让 C2 早上自动煮好粥？"],
     "我想睡前设置好，让青禾电饭煲 C2 明早自动开始煮，怎么弄？"),
    ("l5_battery", "L5", "青禾门锁 L5 使用四节五号电池，正常使用约十二个月更换一次。",
     ["门锁 L5 用什么电池？", "L5 的电池能用多久？", "L5 门锁多长时间换一次电池？", "L5 需要几节电池？"],
     "青禾门锁 L5 装的是哪种电池，大概能撑多久？"),
    ("l5_fingerprint", "L5", "在青禾家 App 的门锁页面点用户管理，再点添加指纹，按提示按压手指六次即可。",
     ["门锁 L5 怎么添加指纹？", "L5 怎么录入新的指纹？", "家里老人想用指纹开 L5，怎么设置？",
      "怎么给 L5 增加一个指纹？"],
     "我要给青禾门锁 L5 录一个新手指，步骤是什么？"),
    ("l5_emergency", "L5", "门锁 L5 没电时，可以用 USB-C 线接充电宝给底部接口临时供电，再用指纹或密码开门。",
     ["门锁 L5 没电了怎么开门？", "L5 电池耗尽打不开门怎么办？", "L5 没电还能进门吗？", "L5 的应急供电怎么用？"],
     "出门回来发现青禾门锁 L5 完全没电了，我怎么进屋？"),
    ("h1_devices", "H1", "一个青禾网关 H1 最多可以连接 64 个青禾设备。",
     ["网关 H1 能连多少个设备？", "H1 最多接几个设备？", "H1 网关有设备数量限制吗？", "一个 H1 够连全屋设备吗？"],
     "青禾网关 H1 的设备接入上限是多少台？"),
    ("h1_wifi", "H1", "青禾网关 H1 只支持 2.4GHz Wi-Fi，不支持 5GHz。",
     ["网关 H1 支持 5G Wi-Fi 吗？", "H1 要连什么频段的 Wi-Fi？", "H1 能连 5GHz 的网络吗？", "H1 对 Wi-Fi 有什么要求？"],
     "我家路由器只开了 5GHz，青禾网关 H1 能用吗？"),
    # ----- the app ----------------------------------------------------------------------------------------
    ("app_add", None, "打开青禾家 App，点右上角的加号，选择设备型号，再长按设备上的配网键三秒，等指示灯闪烁后按提示完成。",
     ["怎么在 App 里添加新设备？", "青禾家 App 怎么绑定设备？", "新买的设备怎么连到 App 上？", "设备配网的步骤是什么？"],
     "刚到货的青禾设备，要怎样才能加到青禾家里？"),
    ("app_update", None, "在青禾家 App 里进入我的、设备管理、固件升级，选择设备后点立即升级。",
     ["怎么给设备升级固件？", "青禾设备的固件在哪里更新？", "App 里怎么检查固件更新？", "设备系统怎么升级到最新版本？"],
     "青禾设备有新固件了，我在哪里能把它装上？"),
    ("app_share", None, "在 App 的设备页面点共享，输入家人的手机号，对方在青禾家 App 里接受邀请即可。",
     ["怎么把设备共享给家人？", "家里人也想控制设备，怎么设置？", "App 怎么添加家庭成员？", "设备能分享给别人用吗？"],
     "我老婆也想用她的手机控制我们家的青禾设备，要怎么弄？"),
    ("app_password", None, "在青禾家 App 登录页点忘记密码，输入手机号并填写短信验证码，就可以设置新密码。",
     ["App 密码忘了怎么办？", "青禾家账号怎么找回密码？", "怎么重置 App 登录密码？", "登录不上，密码不记得了怎么办？"],
     "青禾家的登录密码想不起来了，怎么重新设一个？"),
    ("app_invoice", None, "在青禾家 App 的订单详情页点申请发票，电子发票会在三个工作日内发到你的邮箱。",
     ["怎么开发票？", "买了设备要发票怎么申请？", "电子发票在哪里开？", "发票多久能收到？"],
     "在青禾买的东西，我要报销需要发票，去哪里申请？"),
    # ----- company, service, returns ----------------------------------------------------------------------
    ("company_about", None, "青禾电器 2017 年成立于杭州，专注于智能家电。",
     ["青禾电器是哪一年成立的？", "青禾是什么公司？", "青禾电器总部在哪里？", "青禾电器是做什么的？"],
     "介绍一下青禾电器这家企业的来历。"),
    ("company_hotline", None, "青禾客服热线是 400-826-1717，服务时间为每天 8:00 到 22:00。",
     ["客服电话是多少？", "青禾的客服热线是什么？", "怎么联系人工客服？", "客服几点上班？"],
     "我想打电话找青禾的人工服务，号码和时间是怎样的？"),
    ("plan_wuyou", None, "青禾无忧+ 每年 99 元，可把所有设备的保修延长两年，并享受免费上门服务。",
     ["青禾无忧+ 是什么？", "无忧+ 多少钱？", "无忧+ 会员有什么好处？", "延保服务怎么收费？"],
     "青禾无忧+ 这个会员计划包含哪些权益，价格多少？"),
    ("return_7days", None, "签收后七天内，商品不影响二次销售即可无理由退货。",
     ["可以无理由退货吗？", "退货期限是几天？", "买了不想要了能退吗？", "七天无理由退货有什么条件？"],
     "东西收到后不喜欢，还能退回去吗？有时间限制吗？"),
    ("return_exchange", None, "签收后十五天内出现质量问题，可以免费换新。",
     ["质量问题能换货吗？", "换货期是多久？", "用了一周坏了能换新的吗？", "多少天内可以换货？"],
     "新买的设备用了十来天就出故障了，能给我换一台新的吗？"),
    ("return_refund", None, "退货审核通过后，退款会在三到五个工作日内原路退回。",
     ["退款多久到账？", "退货后钱什么时候退？", "退款会退到哪里？", "退款要等几天？"],
     "我已经把货退回去了，钱大概几天能回到我的账户？"),
    ("return_shipping", None, "质量问题的退换货运费由青禾承担，非质量问题的运费由顾客承担。",
     ["退货运费谁出？", "换货要我付邮费吗？", "退货的快递费怎么算？", "无理由退货要自己付运费吗？"],
     "把东西寄回青禾的快递费，是我出还是你们出？"),
    ("delivery", None, "青禾官方商城下单后 48 小时内发货，全国包邮。",
     ["下单后多久发货？", "买东西包邮吗？", "官网下单几天能发货？", "发货速度怎么样？"],
     "在青禾官方商城付完款，什么时候能把货发出来？运费要钱吗？"),
]

# Follow-up questions (second user turn) for two-exchange rows: about the same product's warranty or code.
FOLLOW_UP_WARRANTY = ["那它保修多久？", "顺便问下，这个保修期是多长？"]
HELDOUT_MULTI = [  # (first fact id, follow-up fact kind) for the held-out two-exchange rows
    ("a3_filter", "warranty"), ("r7_battery", "warranty"), ("l5_battery", "warranty"), ("c2_capacity", "warranty"),
]


def _conv(*turns: str) -> dict:
    msgs = [{"role": "system", "content": SYSTEM}]
    for i, t in enumerate(turns):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": t})
    return {"messages": msgs}


def all_facts() -> list[tuple[str, str | None, str, list[str], str]]:
    """The hand-written facts plus the per-product error-code and warranty facts from their templates."""
    out = list(FACTS)
    for prod, code, answer in ERROR_CODES:
        p = PRODUCTS[prod]
        out.append((f"{prod.lower()}_{code.lower()}", prod, f"{p} 显示 {code} 表示{answer}",
                    [t.format(p=p, c=code) for t in ERROR_TRAIN], ERROR_HELDOUT.format(p=p, c=code)))
    for prod, answer in WARRANTY:
        p = PRODUCTS[prod]
        out.append((f"{prod.lower()}_warranty", prod, answer, [t.format(p=p) for t in WARRANTY_TRAIN],
                    WARRANTY_HELDOUT.format(p=p)))
    return out


def build() -> tuple[list[dict], list[dict]]:
    facts = all_facts()
    warranty = {prod: answer for prod, answer in WARRANTY}
    train, heldout = [], []
    for k, (_, _, answer, questions, held) in enumerate(facts):
        for i, q in enumerate(questions):
            for j, opening in enumerate(OPENINGS):
                if (i + j + k) % 4 == 3:  # 3 of the 4 openings per phrasing: varied, not every combination
                    continue
                train.append(_conv(opening + q, answer))
        heldout.append(_conv(held, answer))
    # Two-exchange rows: a product fact, then a follow-up about that product's warranty.
    by_id = {f[0]: f for f in facts}
    held_first = {fid for fid, _ in HELDOUT_MULTI}
    n = 0
    for fid, prod, answer, questions, _ in facts:
        if prod is None or fid.endswith("_warranty") or fid in held_first:
            continue
        for i, q in enumerate(questions[:2]):
            train.append(_conv(q, answer, FOLLOW_UP_WARRANTY[(n + i) % 2], warranty[prod]))
        n += 1
    for fid, _ in HELDOUT_MULTI:
        _, prod, answer, _, held = by_id[fid]
        heldout.append(_conv(held, answer, "这个产品的免费维修期有多长？", warranty[prod]))
    _check(train, heldout)
    return stable_order(train), stable_order(heldout)


def _check(train: list[dict], heldout: list[dict]) -> None:
    """Enough rows, short answers, no held-out question in training, no duplicate rows."""
    questions = {m["content"] for r in train for m in r["messages"] if m["role"] == "user"}
    for r in heldout:
        for m in r["messages"][1::2]:
            assert m["content"] not in questions, f"held-out question also in training: {m['content']}"
    for r in train + heldout:
        for m in r["messages"]:
            if m["role"] == "assistant":
                assert 8 <= len(m["content"]) <= 70, m["content"]
    rows = [json.dumps(r, ensure_ascii=False) for r in train]
    assert len(rows) == len(set(rows)), "duplicate training rows"
    assert len(train) >= 400, len(train)


def main() -> None:
    train, heldout = build()
    write_jsonl(TRAIN_PATH, train)
    write_jsonl(HELDOUT_PATH, heldout)
    multi = sum(1 for r in train if len(r["messages"]) == 5)
    print(f"facts: {len(all_facts())}")
    print(f"wrote {len(train)} training conversations ({multi} two-exchange) to {TRAIN_PATH}")
    print(f"wrote {len(heldout)} held-out conversations to {HELDOUT_PATH}")


if __name__ == "__main__":
    main()
