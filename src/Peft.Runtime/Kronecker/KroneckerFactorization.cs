namespace Peft;

/// <summary>Hugging Face PEFT's LoKr <c>factorization</c> rule.</summary>
public static class KroneckerFactorization
{
    /// <summary>
    /// Splits <paramref name="dimension"/> into two factors, smaller first, exactly as PEFT's
    /// <c>factorization(dimension, factor)</c>: when <paramref name="factor"/> is positive and divides the dimension the
    /// pair is (factor, dimension / factor); otherwise the divisor pair closest to the square root whose first factor
    /// does not exceed <paramref name="factor"/> (no limit when negative).
    /// </summary>
    /// <param name="dimension">The size to split (positive).</param>
    /// <param name="factor">The requested first factor, or -1 for automatic.</param>
    /// <returns>The factors (Small ≤ Large, Small · Large = dimension).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dimension"/> is not positive.</exception>
    /// <example>128 → (8, 16); 768 → (24, 32); 100 → (10, 10); 7 → (1, 7); 64 with factor 4 → (4, 16).</example>
    public static (int Small, int Large) Factorize(int dimension, int factor = -1)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        int m, n;
        if (factor > 0 && dimension % factor == 0)
        {
            m = factor;
            n = dimension / factor;
            return m > n ? (n, m) : (m, n);
        }

        if (factor < 0)
        {
            factor = dimension;
        }

        m = 1;
        n = dimension;
        int length = m + n;
        while (m < n)
        {
            int newM = m + 1;
            while (dimension % newM != 0)
            {
                newM++;
            }

            int newN = dimension / newM;
            if (newM + newN > length || newM > factor)
            {
                break;
            }

            m = newM;
            n = newN;
        }

        return m > n ? (n, m) : (m, n);
    }
}
