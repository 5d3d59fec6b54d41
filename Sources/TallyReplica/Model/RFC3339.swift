/// RFC 3339 date-times (`2026-11-29T10:00:00Z`, `2026-11-29T10:00:00.123+02:00`) to and from
/// `Timestamp`, without Foundation's formatters: exact, allocation-light and the same on every
/// platform. Fractions beyond milliseconds are truncated.
public enum RFC3339 {
    public static func parse(_ text: String) -> Timestamp? {
        var utf8 = Array(text.utf8)
        guard utf8.count >= 20 else { return nil }
        // Accept a space or lower-case 't'/'z' as RFC 3339 allows.
        if utf8[10] == UInt8(ascii: " ") || utf8[10] == UInt8(ascii: "t") { utf8[10] = UInt8(ascii: "T") }
        func digits(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard index < utf8.count, (0x30...0x39).contains(utf8[index]) else { return nil }
                value = value * 10 + Int(utf8[index] - 0x30)
            }
            return value
        }
        guard let year = digits(0..<4), utf8[4] == UInt8(ascii: "-"), let month = digits(5..<7),
            utf8[7] == UInt8(ascii: "-"), let day = digits(8..<10), utf8[10] == UInt8(ascii: "T"),
            let hour = digits(11..<13), utf8[13] == UInt8(ascii: ":"), let minute = digits(14..<16),
            utf8[16] == UInt8(ascii: ":"), let second = digits(17..<19)
        else { return nil }
        guard (1...12).contains(month), (1...Self.daysIn(month: month, year: year)).contains(day), hour < 24,
            minute < 60, second < 61
        else { return nil }
        var position = 19
        var millis = 0
        if position < utf8.count, utf8[position] == UInt8(ascii: ".") {
            position += 1
            let start = position
            while position < utf8.count, (0x30...0x39).contains(utf8[position]) {
                if position - start < 3 { millis = millis * 10 + Int(utf8[position] - 0x30) }
                position += 1
            }
            guard position > start else { return nil }
            for _ in 0..<max(0, 3 - (position - start)) { millis *= 10 }
        }
        guard position < utf8.count else { return nil }
        var offsetMinutes = 0
        switch utf8[position] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            position += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let sign = utf8[position] == UInt8(ascii: "-") ? -1 : 1
            guard let offsetHour = digits((position + 1)..<(position + 3)), position + 3 < utf8.count,
                utf8[position + 3] == UInt8(ascii: ":"), let offsetMinute = digits((position + 4)..<(position + 6)),
                offsetHour < 24, offsetMinute < 60
            else { return nil }
            offsetMinutes = sign * (offsetHour * 60 + offsetMinute)
            position += 6
        default:
            return nil
        }
        guard position == utf8.count else { return nil }
        let days = Self.daysFromCivil(year: year, month: month, day: day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3_600 + minute * 60 + min(second, 59))
            - Int64(offsetMinutes * 60)
        return Timestamp(millisecondsSinceEpoch: seconds * 1_000 + Int64(millis))
    }

    /// `2026-11-29T10:00:00.000Z`.
    public static func format(_ timestamp: Timestamp) -> String {
        let millis = timestamp.millisecondsSinceEpoch
        var seconds = millis / 1_000
        var fraction = millis % 1_000
        if fraction < 0 {
            fraction += 1_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (year, month, day) = Self.civilFromDays(Int(days))
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(Int(secondOfDay / 3_600), 2)):"
            + "\(pad(Int(secondOfDay % 3_600 / 60), 2)):\(pad(Int(secondOfDay % 60), 2)).\(pad(Int(fraction), 3))Z"
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The inverse of `daysFromCivil`.
    static func civilFromDays(_ days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthPrime = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthPrime + 2) / 5 + 1
        let month = monthPrime < 10 ? monthPrime + 3 : monthPrime - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
