from advisor.entry import run

run()
