using System.Globalization;

namespace Peft.Generators.Tests;

/// <summary>Generated numbers do not depend on the culture the compiler runs under.</summary>
public class CultureTests
{
    private const string Source = """
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace MyModels
        {
            /// <summary>Culture check.</summary>
            public sealed partial class CultureModel : Module<Tensor, Tensor>
            {
                [LoRA(rank: 8, alpha: 16.5, dropout: 0.05)]
                [Kronecker(rank: 4, alpha: 1e-3, Factor = -1, Name = "k")]
                private Module<Tensor, Tensor> fc = Linear(16, 16);

                /// <summary>Builds the model.</summary>
                public CultureModel() : base(nameof(CultureModel)) => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor x) => fc.call(x);
            }
        }
        """;

    [Fact]
    public void GermanCultureStillEmitsInvariantNumbers()
    {
        // de-DE, with a non-ASCII minus as some cultures use; built by hand so the test also bites where ICU is absent.
        var culture = (CultureInfo)CultureInfo.GetCultureInfo("de-DE").Clone();
        culture.NumberFormat.NumberDecimalSeparator = ",";
        culture.NumberFormat.NumberGroupSeparator = ".";
        culture.NumberFormat.NegativeSign = "\u2212";

        string invariant = Generate(CultureInfo.InvariantCulture);
        string german = Generate(culture);

        Assert.Equal("16,5", 16.5.ToString(culture)); // the culture really formats differently
        Assert.Contains("Alpha: 16.5,", german);
        Assert.Contains("Dropout: 0.05,", german);
        Assert.Contains("Alpha: 0.001,", german);
        Assert.Contains("Factor: -1,", german);
        Assert.DoesNotContain("16,5", german);
        Assert.DoesNotContain("\u2212", german);
        Assert.Equal(invariant, german);
    }

    private static string Generate(CultureInfo culture)
    {
        var previous = CultureInfo.CurrentCulture;
        try
        {
            CultureInfo.CurrentCulture = culture;
            var run = TestCompilation.Run(TestCompilation.Create(Source));
            return run.Source("MyModels.CultureModel.Peft.g.cs");
        }
        finally
        {
            CultureInfo.CurrentCulture = previous;
        }
    }
}
