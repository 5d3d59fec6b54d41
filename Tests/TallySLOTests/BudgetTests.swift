import Foundation
import Testing
import TallyAggregates
import TallyReplica
@testable import TallySLO

/// The error-budget arithmetic against the SRE Workbook's own figures, exactly.
@Suite struct BudgetTests {
    static let thirtyDays: Duration = .seconds(30 * 86_400)

    @Test func objectivesParseExactlyAndRefuseWhatIsNoPercentage() throws {
        #expect(try Objective(percent: "99.9").partsPerMillion == 999_000)
        #expect(try Objective(percent: "99.95%").partsPerMillion == 999_500)
        #expect(try Objective(percent: " 99.9999 ").partsPerMillion == 999_999)
        #expect(try Objective(percent: "90").budgetPartsPerMillion == 100_000)
        #expect(try Objective(percent: "99.9").description == "99.9%")
        #expect(try Objective(percent: "95").description == "95%")
        for bad in ["100", "0", "0.999", "99.99999", "abc", "", "99.", "-5", "1e2", "٩٩"] {
            #expect(throws: SLOError.self, "\(bad)") { try Objective(percent: bad) }
        }
        do {
            _ = try Objective(percent: "0.999")
        } catch {
            #expect(error.description.contains("not ratios"), "\(error)")
        }
    }

    /// Workbook, table 5-4: at a 99.9% objective over 30 days, burning at 14.4x for an hour
    /// spends 2% of the budget, 6x for 6 hours 5%, 1x for 3 days 10%.
    @Test func theWorkbooksDefaultPairsSpendTwoFiveAndTenPercent() throws {
        let spent = BurnRateRule.workbook.map { $0.budgetSpentFraction(of: Self.thirtyDays) }
        // Exactly: numerator / denominator reduced by hand.
        #expect(spent[0].numerator * 100 == spent[0].denominator * 2)
        #expect(spent[1].numerator * 100 == spent[1].denominator * 5)
        #expect(spent[2].numerator * 100 == spent[2].denominator * 10)
        #expect(BurnRateRule.workbook.map { $0.factor.description } == ["14.4", "6", "1"])
        #expect(BurnRateRule.workbook.map(\.severity) == [.page, .page, .ticket])
        // And the same through an error budget: 14.4x for an hour is 2% of the month's bad events.
        let objective = try Objective(percent: "99.9")
        // A million events an hour for 720 hours; one hour at 14.4x: 14.4 x 0.1% of its million.
        let month = EventCounts(total: 1_000_000 * 720, bad: 14_400)
        let budget = ErrorBudget(objective: objective, window: Self.thirtyDays, counts: month)
        #expect(abs(budget.spent - 0.02) < 1e-12, "\(budget.spent)")
        #expect(abs(budget.totalMinutes - 43.2) < 1e-9)
        #expect(abs(budget.remainingMinutes - 43.2 * 0.98) < 1e-9)
    }

    /// Each default pair fires exactly at its factor and not one bad event below it.
    @Test func everyPairFiresExactlyAtItsThreshold() throws {
        let objective = try Objective(percent: "99.9")
        for rule in BurnRateRule.workbook {
            // At factor f, bad / total = f x 0.1%: with 10^7 events, f x 10^4 bad ones.
            let total: UInt64 = 10_000_000
            let atThreshold = UInt64(rule.factor.thousandths) * 10
            let at = EventCounts(total: total, bad: atThreshold)
            let below = EventCounts(total: total, bad: atThreshold - 1)
            #expect(rule.evaluate(long: at, short: at, objective: objective, minimumEvents: 0).firing)
            #expect(!rule.evaluate(long: below, short: at, objective: objective, minimumEvents: 0).firing)
            #expect(!rule.evaluate(long: at, short: below, objective: objective, minimumEvents: 0).firing)
            #expect(BurnRate(at, objective: objective).reaches(rule.factor))
            #expect(!BurnRate(below, objective: objective).reaches(rule.factor))
        }
    }

    /// Seeded random counts and objectives: the exact comparison agrees with arbitrary precision
    /// (here: the same inequality in Double, wherever Double is far enough from the boundary).
    @Test func burnRatesCompareExactlyOverRandomCounts() throws {
        var random = SeededRandom(seed: 11)
        for _ in 0..<20_000 {
            let ppm = 500_000 + Int(random.next() % 499_999)
            let objective = try Objective(partsPerMillion: ppm)
            let total = random.next() % 1_000_000_000 + 1
            let bad = random.next() % (total + 1)
            let factor = BurnFactor(thousandths: 1 + Int(random.next() % 100_000))
            let rate = BurnRate(EventCounts(total: total, bad: bad), objective: objective)
            let exact = Double(bad) * 1e9 - Double(factor.thousandths) * Double(total) * Double(objective.budgetPartsPerMillion)
            let scale = Double(bad) * 1e9 + 1
            if abs(exact) > scale * 1e-9 { #expect(rate.reaches(factor) == (exact >= 0)) }
        }
        // Counts near the top of UInt64 do not trap.
        let huge = EventCounts(total: .max, bad: .max - 1)
        #expect(BurnRate(huge, objective: try Objective(percent: "99.9999")).reaches(BurnFactor(thousandths: 1_000_000)))
        #expect(!BurnRate(EventCounts(total: 0, bad: 0), objective: try Objective(percent: "99")).reaches(BurnFactor(thousandths: 1)))
    }

    @Test func aFewErrorsAtTinyTrafficDoNotPageAndSaySo() throws {
        let rule = BurnRateRule.workbook[0]
        let objective = try Objective(percent: "99.9")
        let tiny = EventCounts(total: 20, bad: 3)  // 15% errors: 150x
        let verdict = rule.evaluate(long: tiny, short: tiny, objective: objective, minimumEvents: 100)
        #expect(!verdict.firing)
        let reason = try #require(verdict.suppressed)
        #expect(reason.contains("20 events in 1h, fewer than the minimum of 100"), "\(reason)")
        #expect(reason.contains("150x"), "\(reason)")
        #expect(rule.evaluate(long: tiny, short: tiny, objective: objective, minimumEvents: 20).firing)
    }

    @Test func budgetsExhaustExactlyAndTellTheTimeLeft() throws {
        let objective = try Objective(percent: "99")
        let window: Duration = .seconds(28 * 86_400)
        let full = ErrorBudget(objective: objective, window: window, counts: EventCounts(total: 10_000, bad: 100))
        #expect(!full.isExhausted && full.remaining == 0)
        #expect(ErrorBudget(objective: objective, window: window, counts: EventCounts(total: 10_000, bad: 101)).isExhausted)
        let half = ErrorBudget(objective: objective, window: window, counts: EventCounts(total: 10_000, bad: 50))
        // Half left; burning at 2x, it lasts a quarter of the window.
        let rate = BurnRate(EventCounts(total: 1_000, bad: 20), objective: objective)
        #expect(abs(rate.value - 2) < 1e-12)
        #expect(half.timeToExhaustion(at: rate) == .seconds(7 * 86_400))
        #expect(half.timeToExhaustion(at: BurnRate(EventCounts(total: 5, bad: 0), objective: objective)) == nil)
        #expect(ErrorBudget(objective: objective, window: window, counts: EventCounts(total: 0, bad: 0)).spent == 0)
    }
}
