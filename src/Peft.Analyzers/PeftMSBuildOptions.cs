using System.Globalization;

namespace Peft.Analyzers;

/// <summary>The MSBuild properties the analyzers read (made visible by Peft.Runtime.props) and how they parse.</summary>
internal static class PeftMSBuildOptions
{
    /// <summary>The trainable-parameter budget per class (PEFT0010).</summary>
    public const string MaxTrainableParameters = "PeftMaxTrainableParameters";

    /// <summary>The analyzer config key of <see cref="MaxTrainableParameters"/>.</summary>
    public const string MaxTrainableParametersKey = "build_property." + MaxTrainableParameters;

    /// <summary>What a valid value of <see cref="MaxTrainableParameters"/> looks like (used in PEFT0011's message).</summary>
    public const string NonNegativeIntegerForm =
        "a non-negative integer (decimal digits, optionally grouped with '_' or ',', e.g. 2000000, 2_000_000 or 2,000,000)";

    /// <summary>The outcome of reading an integer property.</summary>
    public enum Status
    {
        /// <summary>Not set, empty or only white space: no budget.</summary>
        Unset = 0,

        /// <summary>A valid value.</summary>
        Valid = 1,

        /// <summary>Set to something that is not a non-negative integer (PEFT0011).</summary>
        Invalid = 2,
    }

    /// <summary>
    /// Parses a non-negative integer: decimal digits, optionally grouped with <c>_</c> or <c>,</c> between digits
    /// (<c>2_000_000</c>, <c>2,000,000</c>); leading and trailing white space is ignored. Signs, decimal points,
    /// exponents, hex, separators at either end and values above <see cref="long.MaxValue"/> are invalid.
    /// </summary>
    public static Status ParseNonNegativeInteger(string? text, out long value)
    {
        value = 0;
        if (text is null) return Status.Unset;
        string trimmed = text.Trim();
        if (trimmed.Length == 0) return Status.Unset;
        if (!IsDigit(trimmed[0]) || !IsDigit(trimmed[trimmed.Length - 1])) return Status.Invalid;

        long result = 0;
        foreach (char c in trimmed)
        {
            if (c == '_' || c == ',') continue;
            if (!IsDigit(c)) return Status.Invalid;
            int digit = c - '0';
            if (result > (long.MaxValue - digit) / 10) return Status.Invalid;
            result = (result * 10) + digit;
        }
        value = result;
        return Status.Valid;
    }

    /// <summary>Formats a value the way messages show it (invariant culture).</summary>
    public static string Format(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static bool IsDigit(char c) => c >= '0' && c <= '9';
}
