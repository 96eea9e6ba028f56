"""The pure clearance core: parsing, money, rules, the join state machine, decisions."""
