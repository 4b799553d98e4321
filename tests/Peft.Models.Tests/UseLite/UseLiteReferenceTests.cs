using System.Text.Json;
using Peft.Models.UseLite;

namespace Peft.Models.Tests.UseLite;

/// <summary>The port against outputs of the original TensorFlow.js model.</summary>
[Collection(UseLiteCollection.Name)]
public sealed class UseLiteReferenceTests(UseLiteFixture fixture)
{
    public static TheoryData<string> ReferenceTexts()
    {
        using var doc = UseLiteFixture.ReadData("reference-embeddings.json");
        var data = new TheoryData<string>();
        foreach (var r in doc.RootElement.GetProperty("references").EnumerateArray()) data.Add(r.GetProperty("text").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(ReferenceTexts))]
    public void Reproduces_the_upstream_reference_embedding(string text)
    {
        using var doc = UseLiteFixture.ReadData("reference-embeddings.json");
        var reference = doc.RootElement.GetProperty("references").EnumerateArray()
            .Single(r => r.GetProperty("text").GetString() == text)
            .GetProperty("embedding").EnumerateArray().Select(e => e.GetDouble()).ToArray();

        float[] embedding = fixture.Model.Embed(text);

        double cosine = UseLiteFixture.Cosine(embedding, reference);
        Assert.True(cosine >= 0.999, $"cosine {cosine} for '{text}'");
        Assert.Equal(1.0, Math.Sqrt(embedding.Sum(v => (double)v * v)), 4);
        Assert.All(embedding.Zip(reference), p => Assert.InRange(p.First - p.Second, -1e-5, 1e-5));
    }

    [Fact]
    public void Reproduces_the_upstream_hello_world_first_component()
    {
        using var doc = UseLiteFixture.ReadData("reference-embeddings.json");
        double expected = doc.RootElement.GetProperty("hello_world_first_component").GetDouble();
        Assert.Equal(expected, fixture.Model.Embed("hello world")[0], 5);
    }

    [Fact]
    public void A_padded_batch_reproduces_the_original_batch_embeddings()
    {
        using var doc = UseLiteFixture.ReadData("use-lite-js-outputs.json");
        var items = doc.RootElement.GetProperty("batch_embeddings").EnumerateArray()
            .Select(e => (Text: e.GetProperty("text").GetString()!, Embedding: e.GetProperty("embedding").EnumerateArray().Select(v => v.GetDouble()).ToArray()))
            .ToArray();
        Assert.True(items.Select(i => fixture.Model.Tokenizer.Encode(i.Text).Length).Distinct().Count() > 1, "the batch must need padding");

        var embeddings = fixture.Model.Embed(items.Select(i => i.Text).ToArray());

        for (int i = 0; i < items.Length; i++)
        {
            double cosine = UseLiteFixture.Cosine(embeddings[i], items[i].Embedding);
            Assert.True(cosine >= 0.9999, $"cosine {cosine} for '{items[i].Text}'");
        }
    }

    [Fact]
    public void Texts_longer_than_the_graph_limit_keep_their_first_128_tokens()
    {
        string longText = string.Join(' ', Enumerable.Repeat("the fox jumped over the lazy dog", 30));
        int[] ids = fixture.Model.Tokenizer.Encode(longText);
        Assert.True(ids.Length > UseLiteConfig.MaxTokens);
        var (batchIds, mask) = fixture.Model.Batch([longText]);
        using (batchIds)
        using (mask)
        {
            Assert.Equal(new long[] { 1, UseLiteConfig.MaxTokens }, batchIds.shape);
            Assert.Equal(ids.Take(UseLiteConfig.MaxTokens).Select(i => (long)i), batchIds.data<long>().ToArray());
        }
    }
}
