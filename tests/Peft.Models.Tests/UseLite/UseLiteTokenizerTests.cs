using Peft.Models.UseLite;

namespace Peft.Models.Tests.UseLite;

/// <summary>Token ids against the original JavaScript tokenizer, and its rules on a vocabulary small enough to reason about.</summary>
[Collection(UseLiteCollection.Name)]
public sealed class UseLiteTokenizerTests(UseLiteFixture fixture)
{
    public static TheoryData<int> JavaScriptCases()
    {
        using var doc = UseLiteFixture.ReadData("use-lite-js-outputs.json");
        var data = new TheoryData<int>();
        for (int i = 0; i < doc.RootElement.GetProperty("tokens").GetArrayLength(); i++) data.Add(i);
        return data;
    }

    private static (string Text, int[] Ids) JavaScriptCase(int index)
    {
        using var doc = UseLiteFixture.ReadData("use-lite-js-outputs.json");
        var item = doc.RootElement.GetProperty("tokens")[index];
        return (item.GetProperty("text").GetString()!, item.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
    }

    [Theory]
    [MemberData(nameof(JavaScriptCases))]
    public void Ids_equal_the_original_JavaScript_tokenizer(int index)
    {
        var (text, expected) = JavaScriptCase(index);
        Assert.Equal(expected, fixture.Model.Tokenizer.Encode(text));
    }

    [Fact]
    public void Microsoft_ML_Tokenizers_unigram_model_agrees_on_text_whose_characters_are_all_in_the_vocabulary()
    {
        var sentencePiece = UseLiteSentencePiece.Create(fixture.Model.Tokenizer);
        int compared = 0;
        using var doc = UseLiteFixture.ReadData("use-lite-js-outputs.json");
        for (int index = 0; index < doc.RootElement.GetProperty("tokens").GetArrayLength(); index++)
        {
            var (text, expected) = JavaScriptCase(index);
            if (expected.Contains(0) || text.Length == 0) continue;   // unknown characters: the JavaScript scores them differently
            Assert.Equal(expected, UseLiteSentencePiece.EncodeToIds(sentencePiece, text));
            compared++;
        }
        Assert.True(compared >= 10, $"only {compared} texts compared");
    }

    private static UseLiteTokenizer Tiny() => new(
    [
        ("\uFFFD", 0), ("<s>", 0), ("</s>", 0), ("x1", 0), ("x2", 0), ("x3", 0),
        ("\u2581a", -1.0), ("b", -2.0), ("\u2581ab", -2.5), ("a", -1.5), ("\u2581", -3.0), ("c", -4.0),
    ]);

    [Fact]
    public void Viterbi_takes_the_best_total_score()
    {
        // "▁ab": one piece (-2.5) beats "▁a" + "b" (-3.0).
        Assert.Equal(new[] { 8 }, Tiny().Encode("ab"));
        // "▁a▁c": "▁a" then "▁" + "c".
        Assert.Equal(new[] { 6, 10, 11 }, Tiny().Encode("a c"));
    }

    [Fact]
    public void Unknown_characters_become_id_0_and_runs_of_them_collapse()
    {
        Assert.Equal(new[] { 6, 0, 7 }, Tiny().Encode("azzb"));
        // "▁" is a piece; the emoji after it is not.
        Assert.Equal(new[] { 10, 0 }, Tiny().Encode("\U0001F600"));
    }

    [Fact]
    public void Reserved_pieces_are_never_produced()
    {
        Assert.Equal(new[] { 10, 0 }, Tiny().Encode("<s>"));
    }

    [Fact]
    public void Preprocessing_applies_NFKC_and_marks_every_space()
    {
        Assert.Equal("\u2581fi\u2581\u2581A", UseLiteTokenizer.Preprocess("\uFB01  \uFF21"));
        Assert.Equal("", UseLiteTokenizer.Preprocess(""));
        Assert.Empty(Tiny().Encode(""));
    }
}
